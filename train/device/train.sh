#!/usr/bin/env bash
# Run ON THE DEVICE (one `run` call, carry [".whl", ".gpu"]), e.g.
#   bash train/device/train.sh 9   # minutes of training per model
# Trains the models below in parallel with Keras on JAX, each resuming from its
# committed checkpoint under train/checkpoints/ when there is one, and returns
# the checkpoints as $OUT/checkpoints.tar. Unpack it here over train/checkpoints/
# and export with `python -m train export --name NAME --scale S` (TensorFlow).
set -uo pipefail
MINUTES=${1:-9}
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD KERAS_BACKEND=jax XLA_PYTHON_CLIENT_PREALLOCATE=false PYTHONUNBUFFERED=1
DATA=".gpu/data/bsds500/train .gpu/data/bsds500/test"
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
# name arch scale steps
while read -r name arch scale steps; do
  python3 -m train --name "$name" --arch "$arch" --scale "$scale" --steps "$steps" --data $DATA \
    --ckpt-every 1000 --max-minutes "$MINUTES" --no-export > "$OUT/$name-x$scale.log" 2>&1 &
done <<'MODELS'
default skip7x64 3 30000
default skip7x64 2 30000
default skip7x64 4 30000
fast skip4x32 3 30000
paper paper 3 15000
MODELS
wait
tail -n 3 "$OUT"/*.log
tar -cf "$OUT/checkpoints.tar" train/checkpoints
