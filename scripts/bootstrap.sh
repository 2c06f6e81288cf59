#!/usr/bin/env bash
# Install what the stack and the tests need (idempotent): Debian packages and a
# Python virtual environment with pinned versions. Run as root on Debian/Ubuntu.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v rabbitmq-server >/dev/null || need_apt+=(rabbitmq-server)
command -v promtool >/dev/null || need_apt+=(prometheus)
command -v chromium >/dev/null || need_apt+=(chromium)
if [ ${#need_apt[@]} -gt 0 ]; then
  if [ "$(id -u)" != 0 ]; then
    echo "bootstrap: need root to install: ${need_apt[*]} (or install them yourself)" >&2; exit 2
  fi
  echo "bootstrap: installing ${need_apt[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
fi

PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
if ! cmp -s pyproject.toml .venv/.installed-pyproject 2>/dev/null; then
  echo "bootstrap: installing Python packages into .venv"
  .venv/bin/pip install -q --upgrade "pip<26" "setuptools<81"
  .venv/bin/pip install -q -e ".[dev]"
  cp pyproject.toml .venv/.installed-pyproject
fi
