#!/bin/bash
# Times creating 10,000-line batches on a release `easel serve` (driver
# off, so nothing runs): from a template, and from an uploaded JSONL file
# (upload and create timed apart), with the server's RSS before and after,
# and reading the batch's status. SQLite by default; with PG=1 a fresh
# PostgreSQL database on the local server (dropped at the end).
set -e
D=$(mktemp -d)
cd "$(dirname "$0")/.."
PORT=8931
BASE=http://127.0.0.1:$PORT
DBENV=()
if [ "${PG:-0}" = 1 ]; then
  DB=easel_bench_$$
  psql -q -h 127.0.0.1 -U postgres -c "CREATE DATABASE $DB" postgres
  DBENV=(EASEL_DATABASE__URL=postgres://postgres@127.0.0.1:5432/$DB)
fi
env "${DBENV[@]}" EASEL_DATA_DIR=$D EASEL_BATCHES__DRIVE=false EASEL_SERVER__LISTEN=127.0.0.1:$PORT \
  ${EASEL_BIN:-./target/release/easel} serve > $D/log 2>&1 &
PID=$!
for i in $(seq 1 600); do curl -sf $BASE/readyz >/dev/null && break; sleep 0.2; done
echo "backend: ${DBENV[*]:-sqlite}"
rss() { awk '/VmRSS/{print $2}' /proc/$PID/status; }
echo "rss before kB: $(rss)"
python3 - "$D" <<'PY'
import json, sys
d = sys.argv[1]
json.dump({"template": {"prompt": "a {color} {object}",
  "variables": {"color": [f"c{i}" for i in range(100)], "object": [f"o{i}" for i in range(100)]},
  "body": {"seed": 7}}}, open(f"{d}/body.json", "w"))
with open(f"{d}/requests.jsonl", "w") as f:
    for i in range(10000):
        f.write(json.dumps({"custom_id": f"r{i}", "method": "POST", "url": "/v1/images/generations",
                            "body": {"prompt": f"a lamp, variant {i}", "seed": i}}) + "\n")
PY
/usr/bin/time -f "template create wall %e s" curl -s -o $D/batch.json -H 'content-type: application/json' --data @$D/body.json $BASE/v1/batches
echo "rss after template kB: $(rss)"
/usr/bin/time -f "jsonl upload wall %e s" curl -s -o $D/file.json -F purpose=batch -F file=@$D/requests.jsonl $BASE/v1/files
FILE=$(python3 -c "import json;print(json.load(open('$D/file.json'))['id'])")
/usr/bin/time -f "jsonl create wall %e s" curl -s -o $D/batch2.json -H 'content-type: application/json' \
  --data "{\"input_file_id\": \"$FILE\"}" $BASE/v1/batches
echo "rss after jsonl kB: $(rss)"
ID=$(python3 -c "import json;print(json.load(open('$D/batch2.json'))['id'])")
python3 -c "import json;b=json.load(open('$D/batch2.json'));print(b['status'], b['request_counts'])"
/usr/bin/time -f "status wall %e s" curl -s -o /dev/null $BASE/v1/batches/$ID
/usr/bin/time -f "status wall %e s" curl -s -o /dev/null $BASE/v1/batches/$ID
/usr/bin/time -f "manifest (10,000 pending lines) wall %e s" curl -s -o /dev/null "$BASE/v1/batches/$ID/manifest?format=csv"
echo "rss end kB: $(rss)"
kill $PID; wait $PID 2>/dev/null || true
rm -rf $D
if [ "${PG:-0}" = 1 ]; then psql -q -h 127.0.0.1 -U postgres -c "DROP DATABASE $DB" postgres; fi
