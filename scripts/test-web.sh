#!/usr/bin/env bash
# The web app's tests: component tests (Vitest), the production build, and the end-to-end test
# of `python cli.py serve` driven in Debian's Chromium with playwright-core.
#
# Needs: Node 20+ with npm, and the Python venv at .venv with the package installed (or PYTHON=...).
# Installs Chromium with apt-get when /usr/bin/chromium is missing (as root, non-interactive).
# Environment: PYTHON, CHROMIUM (default /usr/bin/chromium), E2E_OUTPUT_DIR (screenshots; default
# test-output/e2e), UPDATE_DOCS=1 to refresh docs/drift.png from the e2e screenshot.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export PYTHON="${PYTHON:-$ROOT/.venv/bin/python}"
export CHROMIUM="${CHROMIUM:-/usr/bin/chromium}"
export E2E_OUTPUT_DIR="${E2E_OUTPUT_DIR:-$ROOT/test-output/e2e}"
export CI="${CI:-true}"                # npm and vitest: no prompts, no watch mode, no spinners
export npm_config_fund=false npm_config_audit=false npm_config_update_notifier=false
[[ -t 1 ]] || export NO_COLOR=1       # plain logs when not on a terminal

step() { printf '\n== %s\n' "$*"; }
timed() {  # timed LABEL COMMAND...: runs COMMAND with no stdin, then prints how long it took
  local label=$1 start=$SECONDS
  shift
  "$@" </dev/null
  printf -- '-- %s took %ss\n' "$label" "$((SECONDS - start))" >&2
}

if [[ ! -x "$PYTHON" ]]; then
  echo "test-web: no Python at $PYTHON (create .venv and pip install -e . first, or set PYTHON)" >&2
  exit 1
fi
"$PYTHON" -c 'import rebalance_opt.server, uvicorn' || {
  echo "test-web: $PYTHON cannot import rebalance_opt.server and uvicorn" >&2
  exit 1
}

if [[ ! -x "$CHROMIUM" ]]; then
  step "installing Debian's chromium"
  if [[ "$(id -u)" -ne 0 ]]; then
    echo "test-web: $CHROMIUM is missing and only root can apt-get install chromium" >&2
    exit 1
  fi
  export DEBIAN_FRONTEND=noninteractive
  timed "apt-get update" apt-get update -qq
  timed "apt-get install chromium" apt-get install -y -qq -o Dpkg::Use-Pty=0 chromium >/dev/null
fi
if [[ ! -x "$CHROMIUM" ]]; then
  echo "test-web: still no Chromium at $CHROMIUM after installing Debian's chromium (set CHROMIUM?)" >&2
  exit 1
fi
"$CHROMIUM" --version 2>/dev/null   # (Debian's wrapper script complains on stderr; harmless)

cd "$ROOT/frontend2"

step "npm ci"
timed "npm ci" npm ci --no-audit --no-fund --loglevel=error

step "vitest"
timed vitest npx --no-install vitest run

step "vite build -> rebalance_opt/web"
timed build npm run --silent build
# Once the built page is committed (it ships in the wheel), it must be what the committed sources
# build to: a clean frontend2/ with a changed rebalance_opt/web/ means someone forgot to rebuild.
if git -C "$ROOT" ls-files --error-unmatch rebalance_opt/web/index.html >/dev/null 2>&1 \
  && [[ -n "$(git -C "$ROOT" status --porcelain -- rebalance_opt/web)" ]]; then
  if [[ -z "$(git -C "$ROOT" status --porcelain -- frontend2)" ]]; then
    echo "test-web: the committed rebalance_opt/web/ is stale: run \`npm run build\` in frontend2/ and commit it" >&2
    git -C "$ROOT" status --short -- rebalance_opt/web >&2
    exit 1
  fi
  echo "test-web: note: frontend2/ has changes; commit the rebuilt rebalance_opt/web/ with them"
fi

step "end-to-end (python cli.py serve + chromium)"
timed e2e node --test --test-reporter=spec e2e/drift.test.mjs
echo "e2e screenshot: $E2E_OUTPUT_DIR/drift.png"
