#!/bin/bash
# Times creating a 10,000-line template batch on a release `easel serve`
# (driver off, so nothing runs), and the server's RSS before and after.
set -e
D=$(mktemp -d)
cd "$(dirname "$0")/.."
EASEL_DATA_DIR=$D EASEL_BATCHES__DRIVE=false EASEL_SERVER__LISTEN=127.0.0.1:8931 ${EASEL_BIN:-./target/release/easel} serve > $D/log 2>&1 &
PID=$!
for i in $(seq 1 600); do curl -sf http://127.0.0.1:8931/readyz >/dev/null && break; sleep 0.2; done
rss() { awk '/VmRSS/{print $2}' /proc/$PID/status; }
echo "rss before kB: $(rss)"
python3 - > $D/body.json <<'PY'
import json
print(json.dumps({"template": {"prompt": "a {color} {object}",
  "variables": {"color": [f"c{i}" for i in range(100)], "object": [f"o{i}" for i in range(100)]},
  "body": {"seed": 7}}}))
PY
/usr/bin/time -f "create wall %e s" curl -s -o $D/batch.json -H 'content-type: application/json' --data @$D/body.json http://127.0.0.1:8931/v1/batches
echo "rss after kB: $(rss)"
ID=$(python3 -c "import json;print(json.load(open('$D/batch.json'))['id'])")
python3 -c "import json;b=json.load(open('$D/batch.json'));print(b['status'], b['request_counts'])"
/usr/bin/time -f "status wall %e s" curl -s -o /dev/null http://127.0.0.1:8931/v1/batches/$ID
/usr/bin/time -f "status wall %e s" curl -s -o /dev/null http://127.0.0.1:8931/v1/batches/$ID
echo "rss end kB: $(rss)"
kill $PID; wait $PID 2>/dev/null || true
rm -rf $D
