#!/usr/bin/env bash
# The whole test suite against the real stack: installs what is missing,
# starts RabbitMQ and the MongoDB-protocol server if they are not running,
# then runs pytest (extra arguments go to pytest). The stack stays up;
# stop it with: .venv/bin/python -m infra.stack down
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
.venv/bin/python -m infra.stack up
exec .venv/bin/python -m pytest "$@"
