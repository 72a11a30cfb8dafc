#!/usr/bin/env bash
# Set up babysit in ./.venv on a fresh machine. With --test, also what the tests need
# (test packages, Debian's Chromium for the browser tests and PostgreSQL for the cluster tests).
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$python" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
# The CPU build of torch first: a bare `torch` requirement would pull a CUDA build of several GB.
.venv/bin/python -m pip install -q "torch==2.13.0" || .venv/bin/python -m pip install -q \
    --index-url https://download.pytorch.org/whl/cpu "torch>=2.2,<2.15"
if [ "${1:-}" = "--test" ]; then
    .venv/bin/python -m pip install -q -e ".[test]"
    if ! command -v chromium >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1; then
        sudo=""; [ "$(id -u)" = 0 ] || sudo="sudo"
        $sudo apt-get update -qq && $sudo apt-get install -y -qq chromium fonts-noto-color-emoji >/dev/null
    fi
    # The cluster tests start a real PostgreSQL server from Debian's binaries.
    if ! compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null && command -v apt-get >/dev/null 2>&1; then
        sudo=""; [ "$(id -u)" = 0 ] || sudo="sudo"
        $sudo apt-get update -qq && $sudo apt-get install -y -qq postgresql >/dev/null
    fi
else
    .venv/bin/python -m pip install -q -e ".[ui,study]"
fi
echo "babysit is set up in .venv"
