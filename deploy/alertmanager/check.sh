#!/usr/bin/env bash
# Checks deploy/alertmanager/alertmanager.yml: its syntax and semantics
# (`amtool check-config`), then where alerts go (`amtool config routes
# test`): pages to the pager, tickets to the ticket queue, the rollout
# window's info alert nowhere. amtool comes with Debian's
# prometheus-alertmanager package, installed when missing.
set -euo pipefail
cd "$(dirname "$0")"

if ! command -v amtool >/dev/null; then
  apt-get update -qq >/dev/null || true
  apt-get install -y --no-install-recommends prometheus-alertmanager >/dev/null
fi

amtool check-config alertmanager.yml

expect() {
  local want="$1"
  shift
  local got
  got="$(amtool config routes test --config.file=alertmanager.yml "$@")"
  if [ "$got" != "$want" ]; then
    echo "alertmanager routing: $* went to '$got', expected '$want'" >&2
    exit 1
  fi
  echo "routes: $* -> $got"
}
expect pager service=easel alertname=EaselErrorBudgetFastBurn severity=page
expect pager service=easel alertname=EaselLatencyP95High severity=page
expect tickets service=easel alertname=EaselRolloutRolledBack severity=ticket model=emoji
expect tickets service=easel alertname=EaselQualityScoreDrop severity=ticket model=emoji
expect silent service=easel alertname=EaselRolloutInProgress severity=info model=emoji

# Inhibition, on a real Alertmanager (loopback, a temporary folder): while
# a rollout of `emoji` runs, emoji's quality ticket is suppressed; sd15's
# and the latency page are not.
am="$(command -v prometheus-alertmanager || command -v alertmanager)"
work="$(mktemp -d)"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
"$am" --config.file=alertmanager.yml --storage.path="$work" \
  --web.listen-address="127.0.0.1:$port" --cluster.listen-address= >"$work/log" 2>&1 &
am_pid=$!
# Alertmanager writes its snapshots while it shuts down: wait for it to
# exit before removing its folder, or `rm -rf` races with those writes.
trap 'kill $am_pid 2>/dev/null || true; wait $am_pid 2>/dev/null || true; rm -rf "$work"' EXIT
url="--alertmanager.url=http://127.0.0.1:$port"
for _ in $(seq 1 50); do
  amtool "$url" alert query >/dev/null 2>&1 && break
  sleep 0.2
done
amtool "$url" alert add alertname=EaselRolloutInProgress service=easel model=emoji severity=info
amtool "$url" alert add alertname=EaselQualityScoreDrop service=easel model=emoji severity=ticket
amtool "$url" alert add alertname=EaselQualityScoreDrop service=easel model=sd15 severity=ticket
amtool "$url" alert add alertname=EaselLatencyP95High service=easel severity=page
sleep 1
echo "inhibited:"
amtool "$url" alert query --inhibited -o extended | tail -n +2 | cut -c1-90
echo "active:"
amtool "$url" alert query -o extended | tail -n +2 | cut -c1-90
amtool "$url" alert query --inhibited -o extended | grep -q 'EaselQualityScoreDrop.*model="emoji"' \
  || { echo "emoji's quality ticket was not inhibited during its rollout" >&2; exit 1; }
if amtool "$url" alert query -o extended | grep -q 'EaselQualityScoreDrop.*model="emoji"'; then
  echo "emoji's quality ticket is active during its rollout" >&2
  exit 1
fi
amtool "$url" alert query -o extended | grep -q 'EaselQualityScoreDrop.*model="sd15"' \
  || { echo "sd15's quality ticket was inhibited by emoji's rollout" >&2; exit 1; }
amtool "$url" alert query -o extended | grep -q 'EaselLatencyP95High' \
  || { echo "a page was inhibited during a rollout" >&2; exit 1; }
echo "alertmanager: config, routes and inhibition OK"
