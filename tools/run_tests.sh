#!/usr/bin/env bash
# The test command: set up (or reuse) .venv with the pinned stack, then run the whole suite.
#   bash tools/run_tests.sh                 # everything (what CI runs)
#   bash tools/run_tests.sh -m "not slow"   # skip the end-to-end runs while developing
#   bash tools/run_tests.sh -n 0            # in one process (default: one pytest-xdist worker
#                                           # per core; much of the suite is single-threaded
#                                           # Python: compiling, exporting, starting tools)
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PY=$(bash "$ROOT/tools/bootstrap.sh" | tail -n 1)
cd "$ROOT"
start=$(date +%s)
set +e
"$PY" -m pytest tests -n "${MMHIRE_TEST_WORKERS:-auto}" --dist worksteal "$@"
rc=$?
set -e
echo "[run_tests] pytest exit code $rc after $(( $(date +%s) - start )) s"
if [ "$rc" -eq 5 ]; then
    echo "[run_tests] no tests were collected or selected: treating that as a failure" >&2
    exit 1
fi
exit "$rc"
