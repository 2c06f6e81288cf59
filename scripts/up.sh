#!/usr/bin/env bash
# Set up and run the whole stack with demo data: installs what is missing,
# starts RabbitMQ, the MongoDB-protocol server, the gateway (nginx) and every
# service, loads the UNCAC reference data and a seeded demo scenario, and
# prints where to look: first the one address, http://127.0.0.1:8080/.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "${1:-}" = "--docker" ]; then
  docker compose up --build -d
  echo "open http://localhost:8080/   (the gateway: the workspace, the API docs at /docs/, every API under /api/)"
  exit 0
fi
bash scripts/bootstrap.sh
.venv/bin/python -m infra.stack up
.venv/bin/python -m infra.stack services
exec .venv/bin/python -m infra.demo
