#!/usr/bin/env bash
# The `photo` models on a CPU: fine-tunes of the `default` checkpoints on the
# realistic degradation, x3 then x4 then x2, each fitted to its time budget so
# its cosine schedule ends (run again: each resumes from its checkpoint).
# mixed_bfloat16 pays on CPUs with AMX (2.4x here: benchmarks/train_step.py,
# models/README.md); on others pass PRECISION=float32.
set -euo pipefail
cd "$(dirname "$0")/../.."
PRECISION=${PRECISION:-mixed_bfloat16}
run() {  # scale minutes
  python -m train --name photo --scale "$1" --arch skip7x64 --init "train/checkpoints/default_x$1" \
    --degradation realistic --variants 10 --steps 20000 --batch 32 --patch 48 --lr 5e-4 \
    --ckpt-every 250 --precision "$PRECISION" --max-minutes "$2" --fit --no-export
}
run 3 "${X3_MINUTES:-45}"
run 4 "${X4_MINUTES:-35}"
run 2 "${X2_MINUTES:-50}"
