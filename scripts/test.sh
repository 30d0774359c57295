#!/usr/bin/env bash
# Set up (a virtualenv with the package and its test extras) and run the whole test suite:
# the Python tests, then the web app's component and browser tests (scripts/test-web.sh).
# Exits non-zero when any test fails. Used by the README and by .ci/run.
set -uo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}

[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv || exit 1
.venv/bin/python -m pip install --quiet --disable-pip-version-check -e '.[test]' 2>&1 \
  | grep -v "is neither a file nor a directory" || true
.venv/bin/python -c "import rebalance_opt, cvxpy, osqp" || { echo "install failed" >&2; exit 1; }

status=0
.venv/bin/python -m pytest -q -p no:cacheprovider tests || status=1
.venv/bin/python -m pytest -q -p no:cacheprovider --nbmake notebooks || status=1
if [ -f scripts/test-web.sh ]; then
  bash scripts/test-web.sh || status=1
fi
if [ "$status" -ne 0 ]; then echo "TESTS FAILED" >&2; fi
exit "$status"
