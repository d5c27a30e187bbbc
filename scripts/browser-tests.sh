#!/usr/bin/env bash
# Browser tests of the agent page and the supervisor board: installs what is
# missing (Debian's chromium, kamailio, sipp, the pinned playwright-core),
# builds the `fiche` binary, then runs tests/browser with node's test runner.
# The tests start fiche, Kamailio and sipp themselves and stop them by PID.
# Screenshots land in tests/artifacts/.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n== %s ==\n' "$*"; }
if [ "$(id -u)" -ne 0 ]; then SUDO=sudo; else SUDO=; fi

need_apt=()
command -v chromium >/dev/null 2>&1 || need_apt+=(chromium)
command -v kamailio >/dev/null 2>&1 || need_apt+=(kamailio)
command -v sipp >/dev/null 2>&1 || need_apt+=(sip-tester)
command -v node >/dev/null 2>&1 || need_apt+=(nodejs)
command -v npm >/dev/null 2>&1 || need_apt+=(npm)
if ((${#need_apt[@]})); then
  step "installing ${need_apt[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need_apt[@]}"
fi

if [ ! -d tests/browser/node_modules ]; then
  step "npm ci (tests/browser)"
  (cd tests/browser && npm ci --no-audit --no-fund)
fi

step "building fiche"
cargo build -p fiche-server

step "browser tests"
mkdir -p tests/artifacts
cd tests/browser
exec node --test --test-concurrency=1 --test-reporter=spec "$@" ./*.test.js
