#!/usr/bin/env bash
# Every PromQL expression of deploy/prometheus/rules.yml and deploy/grafana/*.json,
# run against a real Prometheus scraping a real Easel that has served traffic
# (issue 6; a step of .ci/run). Also shows `easel top` reading the live server.
#
#   bash deploy/check-queries.sh target/debug/easel
#
# 1. starts `easel serve` (bundled model, temporary data folder, a free
#    loopback port) and waits for /readyz;
# 2. starts Prometheus (the Debian package; temporary TSDB, a free loopback
#    port, scrape and rule evaluation every second, rule_files = a copy of
#    rules.yml whose group intervals are set to 1s so the 5m-interval daily
#    group is evaluated within seconds too);
# 3. drives traffic: a short `easel loadtest` in both tiers while `easel top
#    --once` watches, then a 400, a moderation block, 404s, a job failed by
#    its deadline, cancelled jobs and a model reload
#    (deploy/prometheus/check_queries.py traffic);
# 4. waits for a few more scrapes and rule evaluations, then runs every
#    expression (deploy/prometheus/check_queries.py check; its allowlist of
#    expressions that may be empty, each with its reason, is at its top).
# Installs nothing but Prometheus itself (as .ci/run installs promtool), and
# only when it is missing. Stops everything it started on exit.
set -euo pipefail

if [ $# -ne 1 ]; then
  echo "usage: $0 EASEL_BINARY" >&2
  exit 2
fi
easel="$(realpath "$1")"
[ -x "$easel" ] || { echo "check-queries: $1 is not an executable" >&2; exit 2; }
cd "$(dirname "$0")/.."
checker="python3 deploy/prometheus/check_queries.py"

if ! command -v prometheus >/dev/null; then
  apt-get update -qq >/dev/null || true
  apt-get install -y --no-install-recommends prometheus >/dev/null
fi

work="$(mktemp -d)"
pids=()
cleanup() {
  local rc=$?
  for pid in "${pids[@]}"; do
    kill "$pid" 2>/dev/null || true
  done
  for pid in "${pids[@]}"; do
    wait "$pid" 2>/dev/null || true
  done
  if [ "$rc" -ne 0 ]; then
    echo "check-queries: failed (exit $rc); last lines of the logs:" >&2
    for log in "$work"/*.log; do
      [ -f "$log" ] && { echo "== $log" >&2; tail -n 30 "$log" >&2; }
    done
  fi
  rm -rf "$work"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

echo "== easel serve"
easel_port="$(free_port)"
base="http://127.0.0.1:$easel_port"
# A price for device time, so that the cost series move.
EASEL_LOG=warn EASEL_METRICS__PRICE_PER_DEVICE_SECOND=0.0002 "$easel" serve --data-dir "$work/data" --listen "127.0.0.1:$easel_port" \
  >"$work/easel.log" 2>&1 &
pids+=($!)
$checker wait-ready "$base" "$!"
echo "  ready at $base"

echo "== prometheus $(prometheus --version 2>&1 | head -1 | awk '{print $3}')"
prom_port="$(free_port)"
prom="http://127.0.0.1:$prom_port"
sed -E 's/^([[:space:]]*interval:[[:space:]]*).*/\11s/' deploy/prometheus/rules.yml >"$work/rules.yml"
cat >"$work/prometheus.yml" <<EOF
global:
  scrape_interval: 1s
  evaluation_interval: 1s
rule_files:
  - $work/rules.yml
scrape_configs:
  - job_name: easel
    metrics_path: /metrics
    static_configs:
      - targets: ["127.0.0.1:$easel_port"]
EOF
promtool check config "$work/prometheus.yml" >/dev/null
prometheus --config.file="$work/prometheus.yml" --storage.tsdb.path="$work/tsdb" \
  --web.listen-address="127.0.0.1:$prom_port" >"$work/prometheus.log" 2>&1 &
pids+=($!)

$checker wait-prometheus "$prom" deploy/prometheus/rules.yml

echo "== traffic"
# Open loop, a request a second for a few seconds in each tier (light: CI
# has two cores); `easel top` reads /metrics twice, 2 s apart, while the
# first one runs.
"$easel" loadtest --url "$base" --rate 1 --duration 5 --mode sync --steps 4 \
  --json "$work/loadtest-sync.json" >"$work/loadtest-sync.log" 2>&1 &
loadtest=$!
pids+=($loadtest)
sleep 1
"$easel" top --once --interval 2 --url "$base" | tee "$work/top.txt"
wait "$loadtest"
grep -E 'throughput|requests' "$work/loadtest-sync.log" | sed 's/^/  sync: /'
"$easel" loadtest --url "$base" --rate 1 --duration 3 --mode jobs --tier batch --steps 4 \
  --json "$work/loadtest-jobs.json" >"$work/loadtest-jobs.log" 2>&1
grep -E 'throughput|requests' "$work/loadtest-jobs.log" | sed 's/^/  jobs: /'
# `easel top` saw the requests: a nonzero HTTP rate.
if ! awk '/^HTTP / { ok = ($2 + 0 > 0) } END { exit !ok }' "$work/top.txt"; then
  echo "check-queries: easel top showed no HTTP requests during the load test" >&2
  exit 1
fi
$checker traffic "$base"

echo "== waiting for scrapes and rule evaluations"
sleep 3
$checker wait-prometheus "$prom" deploy/prometheus/rules.yml

echo "== every expression"
$checker check "$prom" deploy/prometheus/rules.yml deploy/grafana/*.json
