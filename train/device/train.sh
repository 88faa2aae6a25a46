#!/usr/bin/env bash
# Run ON THE DEVICE (one `run` call, carry [".whl", ".gpu"]), e.g.
#   bash train/device/train.sh 7.5   # minutes per model, data loading included
# Trains the models below in parallel with Keras on JAX, each resuming from its
# committed checkpoint under train/checkpoints/ when there is one. Each run's
# step total is fitted to the time (python -m train --fit), so every cosine
# schedule completes. Returns one $OUT/NAME-xS.tar per model (its checkpoint
# folder and its log; one tar of all would pass the 16 MB a returned file may
# have). Unpack them here over the repository and export each model with
# `python -m train export --name NAME --scale S` (TensorFlow, tf2onnx).
set -uo pipefail
MINUTES=${1:-7.5}
EVERY=${EVERY:-500}
PY=${PY:-python3}
if [ -z "${SKIP_INSTALL:-}" ]; then
  $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH=/tmp/site:$PWD
else
  export PYTHONPATH=$PWD
fi
export KERAS_BACKEND=jax XLA_PYTHON_CLIENT_PREALLOCATE=false PYTHONUNBUFFERED=1
# The data goes where every clone has it, ../shared, so the checkpoints record
# the same portable data paths as a CPU run here does.
if [ ! -d ../shared/data/bsds500/train ]; then
  mkdir -p ../shared/data && cp -r .gpu/data/bsds500 ../shared/data/ || exit 1
fi
ls ../shared/data/bsds500/train ../shared/data/bsds500/test | grep -c -E '\.(jpg|png)$'
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
$PY -c "import jax, keras; print('jax', jax.__version__, jax.devices(), 'keras', keras.__version__)" || exit 1
if [ -z "${ALLOW_CPU:-}" ]; then
  $PY -c "import jax, sys; sys.exit(jax.devices()[0].platform != 'gpu')" || { echo "JAX sees no GPU"; exit 1; }
fi
mkdir -p runs
# name arch scale steps (upper bounds; --fit lowers them to what the time allows)
while read -r name arch scale steps; do
  $PY -m train --name "$name" --arch "$arch" --scale "$scale" --steps "$steps" \
    --ckpt-every "$EVERY" --max-minutes "$MINUTES" --fit --no-export > "runs/$name-x$scale.log" 2>&1 &
done <<<"${MODELS:-default skip7x64 3 60000
default skip7x64 2 60000
default skip7x64 4 60000
fast skip4x32 3 60000
paper paper 3 30000}"
wait
tail -n 4 runs/*.log
for log in runs/*-x?.log; do
  m=$(basename "$log" .log)
  tar -cf "$OUT/$m.tar" "train/checkpoints/${m/-x/_x}" "$log"
done
ls -l "$OUT"
