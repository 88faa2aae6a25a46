#!/usr/bin/env bash
# Run HERE (not on the device) before a GPU training call: fetch the CPython 3.12
# wheels the device image lacks (keras, namex, optree) into .whl/ and copy the
# training images into .gpu/data/ (../shared does not travel to the device).
# Both folders are git-ignored and travel with `carry: [".whl", ".gpu"]`.
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PY:-.venv/bin/python}
mkdir -p .git/info
grep -qx '/.whl/' .git/info/exclude 2>/dev/null || echo /.whl/ >> .git/info/exclude
grep -qx '/.gpu/' .git/info/exclude 2>/dev/null || echo /.gpu/ >> .git/info/exclude
KERAS=$($PY -c "import keras; print(keras.__version__)")
rm -rf .whl && mkdir -p .whl
for pkg in "keras==$KERAS" namex optree; do
  $PY -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 -d .whl "$pkg"
done
# Training images only: B100 (bsds500/val) and the benchmarks never leave.
rm -rf .gpu && mkdir -p .gpu/data/bsds500
cp -r ../shared/data/bsds500/train ../shared/data/bsds500/test .gpu/data/bsds500/
du -sh .whl .gpu
