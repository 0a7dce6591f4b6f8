#!/usr/bin/env bash
# Builds mmcv 2.1.0 (CPU ops, or CUDA ops with FORCE_CUDA=1) once against the venv's torch and keeps the
# wheel in a wheelhouse outside the repo, so later installs (and fresh clones on this machine) reuse it.
# mmcv ships no wheel for torch 2.14 and its setup.py asks for C++14/17 while torch's headers need C++20:
# see docs/autolabel.md and ../shared/notes/mmdetection.md. Takes about 30 minutes on 2 cores.
set -euo pipefail
# The torch to build against: the project venv's own pin.
TORCH_PIN=${TORCH_PIN:-torch==2.14.1}
WHEELHOUSE=${DATAENGINE_WHEELHOUSE:-$HOME/.cache/dataengine/wheelhouse}
mkdir -p "$WHEELHOUSE"
if compgen -G "$WHEELHOUSE/mmcv-2.1.0-*.whl" >/dev/null; then
  echo "mmcv wheel already built: $(ls "$WHEELHOUSE"/mmcv-2.1.0-*.whl)"
  exit 0
fi
BUILD=$(mktemp -d)
trap 'rm -rf "$BUILD"' EXIT
# A throw-away build venv: mmcv's setup.py imports pkg_resources, which setuptools 70 removed, while
# torch itself wants a newer setuptools in the project venv.
python3 -m venv "$BUILD"/venv
PY="$BUILD"/venv/bin/python
"$PY" -m pip install --quiet "$TORCH_PIN" numpy wheel ninja 'mmengine>=0.10,<0.11'
# Separately, because torch's metadata asks for setuptools>=77 (only its own extension builder uses it).
"$PY" -m pip install --quiet 'setuptools<70'
"$PY" -m pip download --quiet --no-deps --no-binary :all: --no-build-isolation mmcv==2.1.0 -d "$BUILD"
tar -xzf "$BUILD"/mmcv-2.1.0.tar.gz -C "$BUILD"
sed -i -e 's/-std=c++14/-std=c++20/g' -e 's/-std=c++17/-std=c++20/g' "$BUILD"/mmcv-2.1.0/setup.py
MMCV_WITH_OPS=1 MAX_JOBS=${MAX_JOBS:-2} "$PY" -m pip wheel --no-build-isolation --no-deps \
  "$BUILD"/mmcv-2.1.0 -w "$BUILD"/out
# Rename into place so a killed build never leaves a half-written wheel where installs look.
for wheel in "$BUILD"/out/mmcv-2.1.0-*.whl; do
  cp "$wheel" "$WHEELHOUSE/.$(basename "$wheel").tmp"
  mv "$WHEELHOUSE/.$(basename "$wheel").tmp" "$WHEELHOUSE/$(basename "$wheel")"
done
echo "built: $(ls "$WHEELHOUSE"/mmcv-2.1.0-*.whl)"
