#!/usr/bin/env bash
# Installs what the test suites need when it is missing, then runs every suite.
# This is the README's test command; .ci/run calls exactly this.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n== %s ==\n' "$*"; }

need_apt=()
command -v kamailio >/dev/null 2>&1 || need_apt+=(kamailio)
command -v sipp >/dev/null 2>&1 || need_apt+=(sip-tester)
# schemathesis (the OpenAPI check) goes in a virtualenv under target/.
command -v python3 >/dev/null 2>&1 || need_apt+=(python3)
python3 -c 'import ensurepip, venv' >/dev/null 2>&1 || need_apt+=(python3-venv)
if ((${#need_apt[@]})); then
  step "installing ${need_apt[*]}"
  if [ "$(id -u)" -ne 0 ]; then SUDO=sudo; else SUDO=; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need_apt[@]}"
fi

# The store suites run against PostgreSQL too; start the local cluster if it is down.
if ! pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; then
  step "starting PostgreSQL"
  if command -v pg_ctlcluster >/dev/null 2>&1 && [ -d /etc/postgresql ]; then
    pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n1)" main start || true
  fi
  for _ in $(seq 1 30); do pg_isready -q -h 127.0.0.1 -p 5432 && break; sleep 1; done
  pg_isready -h 127.0.0.1 -p 5432 || { echo "PostgreSQL is not reachable at 127.0.0.1:5432" >&2; exit 1; }
fi

step "format"
cargo fmt --all -- --check

step "lints"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "the parsers and trackers stay IO-free (no tokio in fiche-pbx without its driver feature)"
if cargo tree -p fiche-pbx -e normal --prefix none | grep -E '^tokio( |-)' ; then
  echo "fiche-pbx depends on tokio without the driver feature" >&2
  exit 1
fi

step "the store and the hub know no phone protocol (no fiche-pbx in their dependencies)"
for crate in fiche-store fiche-hub fiche-model; do
  if cargo tree -p "$crate" -e normal --prefix none | grep -E '^fiche-pbx ' ; then
    echo "$crate depends on fiche-pbx: the shared words live in fiche-model" >&2
    exit 1
  fi
done

step "the session service knows no HTTP (no axum, no http module in crates/server/src/auth)"
if grep -rnE 'axum|crate::http' crates/server/src/auth ; then
  echo "crates/server/src/auth uses HTTP types: they belong in http/session.rs" >&2
  exit 1
fi

# The end-to-end suites are fiche-server's `e2e` test, so cargo builds the fiche
# binary they start (target/debug/fiche) with them; the OpenAPI check below starts
# that same binary.
step "tests: unit, store (SQLite and PostgreSQL), end to end (Kamailio + sipp)"
cargo test --workspace --locked

step "docs/openapi.yaml against the running server (schemathesis, 10 examples per operation)"
SCHEMATHESIS_VERSION=4.32.5
SCHEMATHESIS_VENV=target/schemathesis-venv
if ! "$SCHEMATHESIS_VENV/bin/schemathesis" --version 2>/dev/null | grep -qF "$SCHEMATHESIS_VERSION"; then
  python3 -m venv "$SCHEMATHESIS_VENV"
  "$SCHEMATHESIS_VENV/bin/python" -m pip install --quiet "schemathesis==$SCHEMATHESIS_VERSION"
fi
python3 scripts/openapi-check.py "$SCHEMATHESIS_VENV/bin/schemathesis" 10

step "browser tests (chromium + playwright-core, real fiche, Kamailio + sipp)"
scripts/browser-tests.sh
