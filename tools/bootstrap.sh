#!/usr/bin/env bash
# Create (or reuse) the project-local virtual environment and install the pinned stack into it.
#
#   bash tools/bootstrap.sh          # prints the venv's python path on the last line
#
# A second run with unchanged requirements returns in about a second: the venv keeps a stamp of
# the files that define the install. mmcv 2.1.0 ships only as source, and its compiled ops take
# 10-15 minutes to build on 2 cores (about 13 measured here), so the built wheel is kept in $MMHIRE_WHEEL_CACHE
# (default ~/.cache/mmhire/wheels/<python>-torch<version>) and reused by every later venv.
#
# Environment: MMHIRE_VENV (default <repo>/.venv), MMHIRE_PYTHON (default python3),
#              MMHIRE_WHEEL_CACHE, MAX_JOBS (parallel compile jobs for mmcv, default 2).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV=${MMHIRE_VENV:-$ROOT/.venv}
BASE_PY=${MMHIRE_PYTHON:-python3}
TORCH_VERSION=$(sed -n 's/^torch==//p' "$ROOT/requirements/constraints.txt")
MMCV_VERSION=$(sed -n 's/^mmcv==//p' "$ROOT/requirements/constraints.txt")

say() { echo "[bootstrap] $*" >&2; }

# The stamp covers every file that decides what gets installed.
stamp() {
    cat "$ROOT"/requirements/*.txt "$ROOT/setup.py" "$ROOT/tools/bootstrap.sh" | sha256sum | cut -d' ' -f1
}

mkdir -p "$(dirname "$VENV")"
exec 9>"$VENV.lock"
flock 9  # a second bootstrap (tests and demo started together) waits instead of racing

if [ -x "$VENV/bin/python" ] && [ "$(cat "$VENV/.mmhire-stamp" 2>/dev/null)" = "$(stamp)" ]; then
    say "environment up to date: $VENV"
    echo "$VENV/bin/python"
    exit 0
fi

if [ ! -x "$VENV/bin/python" ]; then
    say "creating virtual environment $VENV"
    "$BASE_PY" -m venv "$VENV"
fi
PY="$VENV/bin/python"
PYTAG=$("$PY" -c 'import sys; print(f"cp{sys.version_info[0]}{sys.version_info[1]}")')
WHEELS=${MMHIRE_WHEEL_CACHE:-$HOME/.cache/mmhire/wheels/$PYTAG-torch$TORCH_VERSION}
PIP=("$PY" -m pip install --disable-pip-version-check -c "$ROOT/requirements/constraints.txt")

say "installing torch $TORCH_VERSION and build tools"
"${PIP[@]}" -q "torch==$TORCH_VERSION"
"${PIP[@]}" -q -r "$ROOT/requirements/build.txt"

# mmcv's wheel is tied to the torch it was compiled against: the cache folder names both.
if ! ls "$WHEELS"/mmcv-"$MMCV_VERSION"-*.whl >/dev/null 2>&1; then
    say "building mmcv $MMCV_VERSION with its ops (10-15 minutes on 2 cores, once per machine)"
    mkdir -p "$WHEELS"
    tmp=$(mktemp -d)
    MAX_JOBS=${MAX_JOBS:-2} MMCV_WITH_OPS=1 "$PY" -m pip wheel -q --disable-pip-version-check \
        --no-deps --no-build-isolation "mmcv==$MMCV_VERSION" -w "$tmp"
    mv "$tmp"/mmcv-*.whl "$WHEELS"/
    rm -rf "$tmp"
fi
"${PIP[@]}" -q --find-links "$WHEELS" --only-binary mmcv "mmcv==$MMCV_VERSION"

say "installing mmengine, mmdet, mmsegmentation, the deploy extra (onnx, onnxruntime, mmdeploy) and mmhire (editable)"
"${PIP[@]}" -q --no-build-isolation -e "$ROOT[tests,deploy]"

"$PY" -c "from mmcv.ops import nms, RoIAlign" || {
    say "mmcv was installed without its compiled ops; delete $WHEELS and run again"; exit 1; }
stamp >"$VENV/.mmhire-stamp"
say "environment ready: $VENV"
echo "$PY"
