#!/usr/bin/env bash
# One entry point that sets itself up: creates .venv and installs ftactors on first use.
#   bash run.sh demo [args]   - the demo: a replicated bank whose primary is killed every few seconds
#   bash run.sh test [args]   - the whole test suite (what CI runs)
#   bash run.sh sim [args]    - the deterministic fault simulator (python -m ftactors.testing)
#   bash run.sh bench [args]  - the benchmark suite (ftactors bench)
set -euo pipefail
cd "$(dirname "$0")"
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ] || ! .venv/bin/python -c "import ftactors, ray, ray.serve, pytest, hypothesis" 2>/dev/null; then
  echo "[run.sh] setting up .venv (first run only)..." >&2
  "$PY" -m venv .venv
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q -e '.[test,bench,metrics,serve]'
fi
cmd=${1:-help}; shift || true
case "$cmd" in
  demo)  exec .venv/bin/ftactors demo "$@" ;;
  test)  # two processes: a multi-node Cluster cannot share a process with the local Ray sessions
         set +e
         .venv/bin/python -m pytest -q -p no:cacheprovider --durations=15 -m "not cluster" "$@"; rc=$?
         .venv/bin/python -m pytest -q -p no:cacheprovider -m cluster "$@" || rc=$?
         exit $rc ;;
  sim)   exec .venv/bin/python -m ftactors.testing "$@" ;;
  bench) exec .venv/bin/ftactors bench "$@" ;;
  *) sed -n '2,7p' "$0"; exit 2 ;;
esac
