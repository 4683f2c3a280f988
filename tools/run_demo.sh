#!/usr/bin/env bash
# The main job: set up (or reuse) .venv with the pinned stack, then train, evaluate and draw the demo.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PY=$(bash "$ROOT/tools/bootstrap.sh" | tail -n 1)
cd "$ROOT"
exec "$PY" tools/demo.py "$@"
