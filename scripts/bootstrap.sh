#!/usr/bin/env bash
# Install what the stack and the tests need (idempotent): Debian packages, a
# Python virtual environment with pinned versions and the browser packages the
# gateway serves (web/package-lock.json). Run as root on Debian/Ubuntu.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v rabbitmq-server >/dev/null || need_apt+=(rabbitmq-server)
command -v promtool >/dev/null || need_apt+=(prometheus)
command -v chromium >/dev/null || need_apt+=(chromium)
command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || need_apt+=(nginx)   # the gateway (infra/gateway.py)
command -v npm >/dev/null || need_apt+=(npm)
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

# The docs page's Swagger UI (and whatever else the workspace takes from the npm registry), exactly as
# locked; install scripts are not run (swagger-ui-dist's only one reports analytics).
if ! cmp -s web/package-lock.json web/node_modules/.installed-lock 2>/dev/null; then
  echo "bootstrap: installing the web packages into web/node_modules"
  (cd web && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error)
  cp web/package-lock.json web/node_modules/.installed-lock
fi
