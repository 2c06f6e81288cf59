#!/usr/bin/env bash
# The whole test suite ROUNDS times in a row (default 3) while other clients load the same stack:
# bench/pipeline_bench.py in a loop against the same broker and database (its own vhost and
# database prefix, real service processes, a partner publishing needs, a webhook receiver) and
# stress-ng on every core. Prints each round's pytest summary line; exits non-zero if any failed.
#
#   bash bench/loaded_suite.sh [ROUNDS] [pytest args...]
set -uo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-3}; shift || true
command -v stress-ng >/dev/null || { echo "loaded_suite: install stress-ng (apt-get install stress-ng)" >&2; exit 2; }
.venv/bin/python -m infra.stack up >/dev/null
log_dir=${TACOORD_STATE_DIR:-.stack}/loaded-suite; mkdir -p "$log_dir"
# own sessions, so that each load (and every process it started) is stopped as a group at the end
setsid bash -c "while true; do .venv/bin/python bench/pipeline_bench.py --events 200 --raw-events 500 \
    --latency-events 50 >>'$log_dir/pipeline.log' 2>&1; done" &
loader=$!
setsid stress-ng --cpu "$(nproc)" --timeout 0 --quiet &
stress=$!
# SIGINT lets the bench clean up (its services stopped, its vhost and databases deleted)
trap 'kill -INT -- -$loader 2>/dev/null; kill -TERM -- -$stress 2>/dev/null; sleep 10;
      kill -KILL -- -$loader 2>/dev/null; wait 2>/dev/null' EXIT
failed=0
for round in $(seq 1 "$rounds"); do
  started=$(date +%s)
  .venv/bin/python -m pytest -q -p no:randomly "$@" >"$log_dir/round-$round.log" 2>&1
  rc=$?
  echo "round $round: rc=$rc in $(( $(date +%s) - started )) s: $(tail -1 "$log_dir/round-$round.log")"
  [ $rc -eq 0 ] || failed=1
done
echo "pipeline bench runs completed meanwhile: $(grep -c 'RSS' "$log_dir/pipeline.log" 2>/dev/null || echo 0)"
exit $failed
