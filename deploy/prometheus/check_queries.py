#!/usr/bin/env python3
"""Runs every PromQL expression of the rules and dashboards against a live
Prometheus that scrapes a live Easel (the CI check of issue 6; driven by
deploy/check-queries.sh). Python standard library only.

Subcommands:
  wait-ready URL [PID]         wait for an Easel's GET /readyz to answer 200
                               (and fail at once if process PID exits)
  traffic BASE                 requests that exercise the SLIs loadtest does not:
                               a 400, a moderation block, 404s, a job failed by
                               its deadline, cancelled jobs, a model reload
  wait-prometheus PROM RULES   wait until Prometheus has scraped Easel a few
                               times and evaluated every rule group
  check PROM RULES DASH...     collect and run every expression; print a table;
                               exit 1 on any error or unexpected empty result

Where the expressions come from:
  - rules: every `record` and `alert` rule, as Prometheus loaded them
    (GET /api/v1/rules gives each rule's expression, health and last error);
    the names are cross-checked against the rule file, so a rule Prometheus
    did not load fails the check. YAML is never parsed here.
  - dashboards: every target `expr` of every panel (rows and nested panels
    included) and of every annotation, and every templating variable's
    query, with Grafana's variables substituted (see `grafana_variables`).
  - the recording rules' own series, queried by name: each must have data.

"With data": a result with no series, or whose every value is NaN (a
quantile of a histogram that saw nothing in its window), counts as empty.
An empty result fails unless its source is in ALLOW_EMPTY below, each entry
with its reason. An allowlist entry that matches no expression fails too,
so the list cannot go stale.
"""

import json
import math
import os
import re
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

# Sources (as printed in the table) whose result may be empty, and why.
# Keys are exact source names: `rules.yml alert NAME`, or
# `<dashboard file> / <panel title> [refId]`.
ALLOW_EMPTY = {
    # Alerts: their expressions are comparisons that select nothing on a
    # healthy server (a few seconds of traffic with two deadline failures
    # and one moderation block may still trip one: data is fine too); that each
    # one fires when it should is promtool's job (deploy/prometheus/tests).
    "rules.yml alert EaselErrorBudgetFastBurn": "alert: must not fire on a healthy server",
    "rules.yml alert EaselErrorBudgetSlowBurn": "alert: must not fire on a healthy server",
    "rules.yml alert EaselSuccessRateBelowSLO": "alert: must not fire on a healthy server",
    "rules.yml alert EaselLatencyP95High": "alert: must not fire on a healthy server",
    "rules.yml alert EaselQueueOldestJobOld": "alert: must not fire on a healthy server",
    "rules.yml alert EaselModerationBlockRateSpike": "alert: must not fire on a healthy server",
    "rules.yml alert EaselQualityScoreDrop": "alert: must not fire on a healthy server",
    "rules.yml alert EaselRolloutRolledBack": "alert: must not fire on a healthy server (no rollout runs)",
    "rules.yml alert EaselRolloutInProgress": "alert: no rollout runs during the check",
    "rules.yml alert EaselPromptDrift": "alert; also needs a week of prompts this server has not seen (the score is NaN)",
    # `offset 1d` reads the day before: a fresh Prometheus has no such day.
    "rules.yml alert EaselCostPerImageUp": "alert; also compares with `offset 1d`, a day of history this Prometheus lacks",
    "rules.yml alert EaselProjectSpendAnomaly": "alert; also compares with `offset 1d`, a day of history this Prometheus lacks",
    "executive.json / Cost per image, day over day [B]": "`offset 1d`: needs a day of history",
    # Engine and load failures: a healthy run has none, and the family has
    # no series before the first.
    "oncall.json / Model errors by code [A]": "easel_model_errors_total has no series until a model fails",
    "oncall.json / Failed and blocked share by version [A]": "easel_version_jobs_total has a `failed` series only once a job failed on a worker",
    "oncall.json / Failed and blocked share by version [B]": "a `rejected` series only once image moderation blocked a job",
    # NVML is read only where a GPU is present; CI runs on CPU.
    "debug.json / GPU utilisation (NVML) [A]": "easel_gpu_utilization_ratio exists only on a machine with a GPU",
}

# Grafana's built-in variables, as Grafana would expand them for a
# Prometheus data source scraped every 15 s over the dashboards' default
# range (`$__rate_interval` = max(4 x scrape interval, $__interval + scrape
# interval)).
BUILTIN_VARIABLES = {
    "__rate_interval": "1m",
    "__interval": "15s",
    "__interval_ms": "15000",
    "__range": "1h",
    "__range_s": "3600",
    "__range_ms": "3600000",
}

# How long to wait for Prometheus (seconds).
WAIT_SECONDS = 120
# Scrapes of Easel to wait for before checking.
MIN_SCRAPES = 5


def fail(message):
    print(f"check-queries: {message}", file=sys.stderr)
    sys.exit(1)


def http(method, url, body=None, headers=None, timeout=30):
    """(status, body bytes); never raises on an HTTP error status."""
    data = None
    headers = dict(headers or {})
    if body is not None:
        data = json.dumps(body).encode()
        headers.setdefault("Content-Type", "application/json")
    req = urllib.request.Request(url, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def prom_get(prom, path, params):
    url = f"{prom}{path}?{urllib.parse.urlencode(params, doseq=True)}"
    status, body = http("GET", url)
    try:
        doc = json.loads(body)
    except ValueError:
        return None, f"HTTP {status}: {body[:200]!r}"
    if doc.get("status") != "success":
        return None, f"{doc.get('errorType', status)}: {doc.get('error', '')}"
    if doc.get("warnings"):
        return None, "warnings: " + "; ".join(doc["warnings"])
    return doc["data"], None


# ---------------------------------------------------------------- wait-ready


def wait_ready(url, pid=None, seconds=180):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if pid is not None:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                fail(f"the server (pid {pid}) exited before {url}/readyz answered 200")
        try:
            status, _ = http("GET", f"{url}/readyz", timeout=5)
            if status == 200:
                return
        except OSError:
            pass
        time.sleep(0.2)
    fail(f"{url}/readyz did not answer 200 within {seconds} s")


# ------------------------------------------------------------------- traffic


def expect(what, got, want):
    status, body = got
    if status != want:
        fail(f"{what}: expected HTTP {want}, got {status}: {body[:300]!r}")
    print(f"  {what}: {status}")
    return json.loads(body) if body else None


def job_status(base, job_id):
    status, body = http("GET", f"{base}/v1/jobs/{job_id}")
    return json.loads(body)["status"] if status == 200 else None


def wait_job(base, job_id, statuses, seconds=120):
    deadline = time.monotonic() + seconds
    s = None
    while time.monotonic() < deadline:
        s = job_status(base, job_id)
        if s in statuses:
            return s
        time.sleep(0.1)
    fail(f"job {job_id} did not reach {statuses} within {seconds} s (last: {s})")


def traffic(base):
    """The SLI events that a load test does not produce. Successes come from
    `easel loadtest`, run by deploy/check-queries.sh."""
    models = expect("GET /v1/models", http("GET", f"{base}/v1/models"), 200)
    model = models["data"][0]["id"]
    small = {"size": "32x32", "steps": 2}

    # Bad requests: an impossible size, and a prompt the default moderation
    # rules block (crates/policy/src/prompt/defaults.json).
    expect(
        "POST /v1/images/generations, size 17x3",
        http("POST", f"{base}/v1/images/generations", {"prompt": "a red apple", "size": "17x3"}),
        400,
    )
    r = expect(
        "POST /v1/images/generations, a blocked prompt",
        http("POST", f"{base}/v1/images/generations", {"prompt": "a hentai apple", **small}),
        400,
    )
    if r["error"]["code"] != "prompt_rejected":
        fail(f"the blocked prompt answered {r}")

    # Unknown job (a matched route) and unknown path (unmatched).
    expect("GET /v1/jobs/{unknown}", http("GET", f"{base}/v1/jobs/job_doesnotexist"), 404)
    expect("GET /no/such/path", http("GET", f"{base}/no/such/path"), 404)

    # A long batch job holds the worker. Behind it, a job with a 1 s
    # deadline, and one more. The last is cancelled while queued, then the
    # long one while running; when the worker next claims, the first has
    # passed its deadline and fails with `deadline_exceeded` (an SLI error).
    long = {"prompt": "a rocket", "size": "64x64", "steps": 150, "tier": "batch"}
    first = expect("POST /v1/jobs, long", http("POST", f"{base}/v1/jobs", long), 202)
    wait_job(base, first["id"], {"running", "succeeded"})
    doomed = expect(
        "POST /v1/jobs, X-Easel-Timeout 1",
        http(
            "POST",
            f"{base}/v1/jobs",
            {"prompt": "a taco", "size": "48x48", "steps": 150, "tier": "batch"},
            {"X-Easel-Timeout": "1"},
        ),
        202,
    )
    queued = expect(
        "POST /v1/jobs, to cancel",
        http("POST", f"{base}/v1/jobs", {**long, "size": "56x56"}),
        202,
    )
    # A synchronous request whose 1 s deadline passes behind them: 504, a
    # server-side failure (the 5xx of the HTTP panels).
    expect(
        "POST /v1/images/generations, X-Easel-Timeout 1",
        http(
            "POST",
            f"{base}/v1/images/generations",
            {"prompt": "a dog face", **small},
            {"X-Easel-Timeout": "1"},
        ),
        504,
    )
    time.sleep(0.5)
    expect("DELETE /v1/jobs/{queued}", http("DELETE", f"{base}/v1/jobs/{queued['id']}"), 200)
    expect("DELETE /v1/jobs/{running}", http("DELETE", f"{base}/v1/jobs/{first['id']}"), 200)
    for what, job, want in (
        ("running", first, "cancelled"),
        ("queued", queued, "cancelled"),
        ("1 s deadline", doomed, "failed"),
    ):
        got = wait_job(base, job["id"], {"cancelled", "succeeded", "failed"})
        if got != want:
            fail(f"the {what} job ended {got}, not {want}")
        print(f"  the {what} job: {got}")

    # A model reload, so that a load is observed while Prometheus scrapes.
    expect(f"unload {model}", http("POST", f"{base}/v1/admin/models/{model}/unload"), 200)
    expect(f"load {model}", http("POST", f"{base}/v1/admin/models/{model}/load"), 202)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        status, body = http("GET", f"{base}/v1/models/{model}")
        if status == 200 and json.loads(body).get("state") == "ready":
            break
        time.sleep(0.2)
    else:
        fail(f"{model} was not ready again within 120 s")
    # A few more successes after the reload, synchronously.
    for prompt in ("a cat face", "a pizza", "a snowman"):
        expect(
            f"POST /v1/images/generations {prompt!r}",
            http("POST", f"{base}/v1/images/generations", {"prompt": prompt, **small}),
            200,
        )


# ----------------------------------------------------------- wait-prometheus


def rule_names(rules_file):
    """(kind, name) of every rule in the file, read line by line: each rule
    starts with `- record: NAME` or `- alert: NAME`."""
    names = []
    with open(rules_file) as f:
        for line in f:
            m = re.match(r"\s*-\s*(record|alert):\s*(\S+)\s*$", line)
            if m:
                names.append((m.group(1), m.group(2)))
    if not names:
        fail(f"no rules found in {rules_file}")
    return names


def loaded_rules(prom):
    data, err = prom_get(prom, "/api/v1/rules", {})
    if err:
        fail(f"/api/v1/rules: {err}")
    return data["groups"]


def wait_prometheus(prom, rules_file):
    deadline = time.monotonic() + WAIT_SECONDS
    last = "nothing yet"
    while time.monotonic() < deadline:
        time.sleep(1)
        data, err = prom_get(prom, "/api/v1/query", {"query": 'count_over_time(up{job="easel"}[5m])'})
        if err or not data["result"]:
            last = err or "no scrape yet"
            continue
        scrapes = int(float(data["result"][0]["value"][1]))
        data, _ = prom_get(prom, "/api/v1/query", {"query": 'up{job="easel"}'})
        if data["result"][0]["value"][1] != "1":
            last = "the target is down"
            continue
        groups = loaded_rules(prom)
        unevaluated = [
            r["name"]
            for g in groups
            for r in g["rules"]
            if r.get("lastEvaluation", "0001").startswith("0001")
        ]
        if scrapes >= MIN_SCRAPES and groups and not unevaluated:
            print(f"  {scrapes} scrapes; {len(groups)} rule groups evaluated")
            return
        last = f"{scrapes} scrapes; not yet evaluated: {unevaluated[:3]}"
    fail(f"Prometheus not ready within {WAIT_SECONDS} s: {last}")


# --------------------------------------------------------------------- check


def walk_panels(panels):
    for p in panels or []:
        yield p
        # Rows hold collapsed panels in `panels`; libraries nest the same way.
        yield from walk_panels(p.get("panels"))


def grafana_variables(prom, dashboard, name):
    """Values for the dashboard's templating variables, as a viewer who
    picked "All" (or the first value) would get them."""
    values = dict(BUILTIN_VARIABLES)
    queries = []
    for v in dashboard.get("templating", {}).get("list", []):
        kind, var = v.get("type"), v["name"]
        if kind == "datasource":
            continue
        if kind == "query":
            q = v.get("query")
            q = q.get("query") if isinstance(q, dict) else q
            queries.append((f"{name} / variable ${var}", q))
            found = label_values(prom, q) if q else []
            if v.get("includeAll") and v.get("allValue"):
                values[var] = v["allValue"]
            elif v.get("includeAll") or v.get("multi"):
                values[var] = "(" + "|".join(re.escape(x) for x in found) + ")"
            else:
                values[var] = found[0] if found else ""
        elif kind in ("custom", "interval", "constant", "textbox"):
            current = (v.get("current") or {}).get("value")
            options = [o.get("value") for o in v.get("options", [])]
            values[var] = current or (options[0] if options else v.get("query", ""))
        else:
            fail(f"{name}: variable ${var} of type {kind!r} is not handled by this check")
    return values, queries


def label_values(prom, query):
    """Runs a Grafana `label_values(metric, label)` / `label_values(label)`
    variable query the way Grafana does (the label values API)."""
    m = re.fullmatch(r"\s*label_values\(\s*(?:(.+?)\s*,\s*)?(\w+)\s*\)\s*", query or "")
    if not m:
        fail(f"variable query {query!r} is not label_values(...): extend this check")
    params = {"match[]": m.group(1)} if m.group(1) else {}
    data, err = prom_get(prom, f"/api/v1/label/{m.group(2)}/values", params)
    if err:
        fail(f"variable query {query!r}: {err}")
    return data


def substitute(expr, values):
    def repl(m):
        var = m.group(1) or m.group(2)
        if var not in values:
            raise KeyError(var)
        return values[var]

    return re.sub(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)", repl, expr)


def collect(prom, rules_file, dashboards):
    """(source, expression as written, expression to run, kind) of everything
    to check; kind is `query` or `label_values`."""
    items = []
    groups = loaded_rules(prom)
    loaded = {}
    for g in groups:
        for r in g["rules"]:
            kind = "alert" if r["type"] == "alerting" else "record"
            loaded[(kind, r["name"])] = r
            if r.get("health") != "ok" or r.get("lastError"):
                fail(f"rule {r['name']} in group {g['name']}: health {r.get('health')}: {r.get('lastError')}")
    in_file = rule_names(rules_file)
    missing = [n for n in in_file if n not in loaded]
    extra = [n for n in loaded if n not in in_file]
    if missing or extra:
        fail(f"rules in {rules_file} but not loaded: {missing}; loaded but not in the file: {extra}")
    for kind, rule in in_file:
        q = loaded[(kind, rule)]["query"]
        items.append((f"rules.yml {kind} {rule}", q, q, "query"))
    # The recording rules' output series themselves.
    for kind, rule in in_file:
        if kind == "record":
            items.append((f"series {rule}", rule, rule, "query"))

    for path in dashboards:
        name = path.rsplit("/", 1)[-1]
        with open(path) as f:
            d = json.load(f)
        values, var_queries = grafana_variables(prom, d, name)
        for source, q in var_queries:
            items.append((source, q, q, "label_values"))
        targets = []
        for p in walk_panels(d.get("panels")):
            for t in p.get("targets", []):
                targets.append((f"{name} / {p.get('title', '?')} [{t.get('refId', '?')}]", t))
        for a in d.get("annotations", {}).get("list", []):
            if a.get("expr"):
                targets.append((f"{name} / annotation {a.get('name', '?')}", a))
        if not targets:
            fail(f"{name}: no targets found")
        for source, t in targets:
            expr = t.get("expr")
            if not expr:
                fail(f"{source}: a target without `expr`")
            try:
                items.append((source, expr, substitute(expr, values), "query"))
            except KeyError as e:
                fail(f"{source}: unknown variable ${e.args[0]} in {expr!r}")
    return items


def run_one(prom, kind, expr):
    """(result count, status, error)."""
    if kind == "label_values":
        vals = label_values(prom, expr)
        return len(vals), ("data" if vals else "empty"), None
    data, err = prom_get(prom, "/api/v1/query", {"query": expr})
    if err:
        return 0, "error", err
    if data["resultType"] in ("scalar", "string"):
        return 1, "data", None
    result = data["result"]
    values = [float(s["value"][1]) for s in result]
    if not result:
        return 0, "empty", None
    if all(math.isnan(v) for v in values):
        return len(result), "NaN", None
    return len(result), "data", None


def check(prom, rules_file, dashboards):
    items = collect(prom, rules_file, dashboards)
    used = set()
    rows = []
    failures = []
    for source, written, expr, kind in items:
        n, status, err = run_one(prom, kind, expr)
        verdict = "ok"
        if err:
            verdict = "FAIL"
            failures.append(f"{source}: {err}\n    {expr}")
        elif status in ("empty", "NaN"):
            if source in ALLOW_EMPTY:
                used.add(source)
                verdict = "allowed"
            else:
                verdict = "FAIL"
                failures.append(f"{source}: no data ({status}) where data is expected\n    {expr}")
        elif source in ALLOW_EMPTY:
            used.add(source)
        rows.append((source, n, status, verdict, written))

    w = max(len(r[0]) for r in rows)
    print(f"{'source':<{w}}  {'n':>3}  {'result':<6}  verdict")
    for source, n, status, verdict, written in rows:
        note = f"  ({ALLOW_EMPTY[source]})" if verdict == "allowed" else ""
        print(f"{source:<{w}}  {n:>3}  {status:<6}  {verdict}{note}")
    stale = sorted(set(ALLOW_EMPTY) - {r[0] for r in rows})
    for s in stale:
        failures.append(f"allowlist entry {s!r} matches no expression: remove or rename it")
    ok = sum(1 for r in rows if r[3] == "ok")
    allowed = sum(1 for r in rows if r[3] == "allowed")
    print(f"\n{len(rows)} expressions: {ok} with data, {allowed} empty as allowed, {len(failures)} failures")
    if failures:
        print("\nFAILURES:", file=sys.stderr)
        for f in failures:
            print(f"  {f}", file=sys.stderr)
        sys.exit(1)


def main(argv):
    if len(argv) < 2:
        fail(__doc__)
    cmd, args = argv[1], argv[2:]
    if cmd == "wait-ready" and len(args) in (1, 2):
        wait_ready(args[0], int(args[1]) if len(args) == 2 else None)
    elif cmd == "traffic" and len(args) == 1:
        traffic(args[0])
    elif cmd == "wait-prometheus" and len(args) == 2:
        wait_prometheus(*args)
    elif cmd == "check" and len(args) >= 3:
        check(args[0], args[1], args[2:])
    else:
        fail(f"bad arguments: {argv[1:]}\n{__doc__}")


if __name__ == "__main__":
    main(sys.argv)
