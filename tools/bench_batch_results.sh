#!/bin/bash
# Reads the results of a finished 10,000-line batch on a release `easel
# serve`: the tiny fixture model (16×16, one step) run from a scratch
# folder, so the shipped classifiers are not loaded and the batch finishes
# in minutes. Times reading the batch's status, its manifest (JSONL and
# CSV) and its zip export, and prints how long the batch took to run.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
BIN=${EASEL_BIN:-$ROOT/target/release/easel}
PORT=${PORT:-8933}
BASE=http://127.0.0.1:$PORT
D=$(mktemp -d)
(cd "$D" && EASEL_DATA_DIR=$D EASEL_SERVER__LISTEN=127.0.0.1:$PORT EASEL_LOG=warn \
  EASEL_BATCHES__INTERVAL_SECONDS=0.1 EASEL_BATCHES__WINDOW=256 EASEL_WORKER__MAX_BATCH_IMAGES=32 \
  "$BIN" serve --model "$ROOT/crates/engine/tests/fixtures/models/tiny-pixel" > "$D/log" 2>&1) &
trap 'pkill -f "serve --model $ROOT/crates/engine/tests/fixtures/models/tiny-pixel" || true; rm -rf "$D"' EXIT
for _ in $(seq 1 600); do curl -sf $BASE/readyz >/dev/null && break; sleep 0.2; done
echo "uptime before: $(uptime)"
python3 - "$BASE" <<'PY'
import json, sys, time, urllib.request
base = sys.argv[1]
v = lambda p: [f"{p}{i}" for i in range(10)]
body = {"template": {"prompt": "a {a} {b}, {c}, {d}",
        "variables": {"a": v("a"), "b": v("b"), "c": v("c"), "d": v("d")},
        "body": {"size": "16x16", "steps": 1}}}
req = urllib.request.Request(base + "/v1/batches", data=json.dumps(body).encode(),
                             headers={"content-type": "application/json"})
start = time.monotonic()
batch = json.load(urllib.request.urlopen(req))
while True:
    b = json.load(urllib.request.urlopen(f"{base}/v1/batches/{batch['id']}"))
    if b["status"] == "completed":
        break
    time.sleep(0.5)
print(f"ran {b['request_counts']['completed']} lines in {time.monotonic() - start:.0f} s")
def timed(path):
    t = time.monotonic()
    n = len(urllib.request.urlopen(base + path).read())
    return time.monotonic() - t, n
for path in [f"/v1/batches/{b['id']}", f"/v1/batches/{b['id']}/manifest",
             f"/v1/batches/{b['id']}/manifest?format=csv", f"/v1/batches/{b['id']}/export"]:
    for _ in range(2):
        s, n = timed(path)
        print(f"GET {path.replace(b['id'], 'ID')}: {s:.3f} s, {n} bytes")
PY
echo "uptime after: $(uptime)"
