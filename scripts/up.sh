#!/usr/bin/env bash
# Set up and run the whole stack with demo data: installs what is missing,
# starts RabbitMQ, the MongoDB-protocol server and every service, loads the
# UNCAC reference data and a seeded demo scenario, and prints where to look.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "${1:-}" = "--docker" ]; then
  exec docker compose up --build -d
fi
bash scripts/bootstrap.sh
.venv/bin/python -m infra.stack up
.venv/bin/python -m infra.stack services
exec .venv/bin/python -m infra.demo
