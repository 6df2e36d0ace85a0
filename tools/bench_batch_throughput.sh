#!/bin/bash
# Throughput of a running batch against `easel bench serve` at saturation,
# on one release `easel serve` (the bundled model, its default size, the
# same steps): first `bench serve --url` with 8 clients, then a template
# batch of $LINES lines, polled every 0.1 s: its rate while running (lines
# settled between the first and the last poll that saw lines done) and end
# to end (creation to `completed`, which adds the first pass of the driver
# and the finalization). Prints the rates and their ratios to bench
# serve's, with `uptime` before and after. Run it on a quiet machine.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${EASEL_BIN:-./target/release/easel}
LINES=${LINES:-96}
STEPS=${STEPS:-8}
PORT=${PORT:-8932}
D=$(mktemp -d)
BASE=http://127.0.0.1:$PORT
EASEL_DATA_DIR=$D EASEL_SERVER__LISTEN=127.0.0.1:$PORT EASEL_BATCHES__INTERVAL_SECONDS=0.2 \
  "$BIN" serve > "$D/log" 2>&1 &
PID=$!
trap 'kill $PID 2>/dev/null || true; rm -rf "$D"' EXIT
for _ in $(seq 1 600); do curl -sf $BASE/readyz >/dev/null && break; sleep 0.2; done
echo "uptime before: $(uptime)"
"$BIN" bench serve --url $BASE --concurrency 8 --requests 32 --steps "$STEPS" \
  --no-batching-comparison --json "$D/serve.json" > /dev/null
python3 - "$BASE" "$LINES" "$STEPS" "$D/serve.json" <<'PY'
import json, sys, time, urllib.request
base, lines, steps, report = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
serve = json.load(open(report))
rows = [r for r in serve["rows"] if r["mode"] == "server"]
best = max(rows, key=lambda r: r["concurrency"])
serve_rate = best["images_per_s"]
words = ["lamp", "cup", "hat", "tree", "boat", "cat", "sun", "car"]
body = {"template": {"prompt": "a {color} {object}",
        "variables": {"color": [f"color {i}" for i in range(lines // len(words))], "object": words},
        "body": {"steps": steps}}}
req = urllib.request.Request(base + "/v1/batches", data=json.dumps(body).encode(),
                             headers={"content-type": "application/json"})
start = time.monotonic()
batch = json.load(urllib.request.urlopen(req))
total = batch["request_counts"]["total"]
first = None  # (time, lines done) at the first poll that saw a line done
last = None   # (time, lines done) at the last poll before the batch ended
while True:
    b = json.load(urllib.request.urlopen(f"{base}/v1/batches/{batch['id']}"))
    now, done = time.monotonic(), b["request_counts"]["completed"]
    if done and first is None:
        first = (now, done)
    if b["status"] in ("completed", "failed", "expired", "cancelled"):
        break
    if done:
        last = (now, done)
    time.sleep(0.1)
wall = time.monotonic() - start
assert b["status"] == "completed" and b["request_counts"]["completed"] == total, b
end_to_end = total / wall
running = (last[1] - first[1]) / (last[0] - first[0])
print(f"bench serve, 8 clients: {serve_rate:.3f} img/s")
print(f"batch of {total} lines, end to end (creation to completed): {wall:.1f} s, "
      f"{end_to_end:.3f} img/s, {end_to_end / serve_rate:.3f} of bench serve")
print(f"batch while running (lines {first[1]} to {last[1]}): {running:.3f} img/s, "
      f"{running / serve_rate:.3f} of bench serve")
PY
echo "uptime after: $(uptime)"
