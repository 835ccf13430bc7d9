#!/usr/bin/env python3
"""The load of scripts/soak.sh, and its report. Standard library only.

  soak_load.py run --gateway URL --pid PID --mock URL --out FILE.json
                   [--mock-pid PID] [--rate R] [--seconds S] [--cancel F]
                   [--sample-every S] [--seed N] [--outage START,END]
                   [--unique-models F]
  soak_load.py report --run FILE.json [--warmup S] [--bucket S]

`run` sends requests to the gateway at a steady rate, open loop (request i
leaves at start + i / rate, on a thread of its own, whatever the answers
before it), each on a new connection, drawn from this mix:

  plain         chat, no stream                          30 %
  stream        chat, streamed                           30 %
  tools         chat with a tool the model calls         15 %
  tools-stream  the same, streamed                       15 %
  hang-up       the client closes the socket: before the
                answer (5 ms after sending, nothing read)
                or mid-stream (after 2 events)           --cancel (10 %),
                                                         half each

(the first four share what --cancel leaves in these proportions). Each
request is recorded: when it was due and when it left, its kind, its
status, how it ended (answered, an error status, an in-band stream error, a
stream cut without its terminator, a tool call whose arguments are not
JSON, no answer, hung up) and its latency (to the last byte; for streams
also to the first content event). The client key comes from the
environment (SOAK_CLIENT_KEY), sent as `Authorization: Bearer`.

Every --sample-every seconds, and once before the load and once after it
has drained, it reads the gateway's (and the mock's) VmRSS and Threads from
/proc/PID/status, counts /proc/PID/fd, and reads /metrics: the number of
series (lines that are not comments or empty), the series per metric
family, `staunch_gateway_connections_open`, and every counter's total.

At the start it resets the mock (POST /_mock/reset), so that an outage in
its scenario counts from there; --outage only labels it in the report.
--unique-models F gives that share of the requests a model name of their
own (`soak-u<N>`): a probe of what client-chosen names do to /metrics, off
by default.

`report` prints per --bucket seconds (60) the requests sent, answered,
errors by status, in-band stream errors and cuts, hang-ups, p50/p99; then
for RSS, open fds, threads, open connections and /metrics series the value
before the load, at the end of the --warmup (60 s), at the end of the load,
after draining, and the least-squares slope after the warm-up (per
minute), with a PASS/FAIL verdict on each (the limits are printed with
them), and the verdict on p99.
"""

import argparse
import http.client
import json
import os
import random
import re
import select
import sys
import threading
import time
import urllib.parse

TIMEOUT = 30.0
WORDS = ("the quick brown fox jumps over the lazy dog while a gateway keeps "
         "answering every agent through rate limits outages and streams cut "
         "halfway so nobody notices").split()
TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather in a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}, "unit": {"type": "string", "enum": ["c", "f"]}},
            "required": ["city"],
        },
    },
}
LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')
MIX = (("plain", 0.30), ("stream", 0.30), ("tools", 0.15), ("tools-stream", 0.15))


def body_for(kind, model, rng):
    words = rng.randint(16, 32)
    text = " ".join(rng.choice(WORDS) for _ in range(words))
    body = {"model": model, "messages": [{"role": "user", "content": text}], "max_tokens": 64}
    if kind in ("stream", "tools-stream", "hang-up-mid-stream"):
        body["stream"] = True
    if kind.startswith("tools"):
        body["tools"] = [TOOL]
    return json.dumps(body)


def read_stream(response, record, started, stop_after=None):
    """Reads an SSE body to its end; notes how it ended. With stop_after,
    returns after that many data events (the caller hangs up)."""
    events = 0
    ended = "cut"
    while True:
        line = response.readline()
        if not line:
            break
        line = line.strip()
        if not line.startswith(b"data:"):
            continue
        data = line[5:].strip()
        if data == b"[DONE]":
            ended = "done"
            break
        if events == 0:
            record["ttft"] = time.time() - started
        events += 1
        try:
            event = json.loads(data)
        except ValueError:
            ended = "bad_event"
            continue
        if isinstance(event, dict) and "error" in event:
            ended = "error_event"
            record["kind_error"] = str(event["error"].get("type", ""))[:60] if isinstance(event["error"], dict) else ""
        if stop_after is not None and events >= stop_after:
            return events, "stopped"
    record["events"] = events
    return events, ended


def tool_arguments_ok(data):
    try:
        answer = json.loads(data)
        calls = answer["choices"][0]["message"].get("tool_calls") or []
        for call in calls:
            json.loads(call["function"]["arguments"])
        return bool(calls)
    except (ValueError, KeyError, IndexError, TypeError):
        return False


def one_request(record, url, key, model, rng_seed):
    """One request on a connection of its own; fills `record`."""
    rng = random.Random(rng_seed)
    kind = record["kind"]
    body = body_for(kind, model, rng)
    headers = {"content-type": "application/json", "authorization": f"Bearer {key}"}
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=TIMEOUT)
    started = time.time()
    record["sent"] = started
    try:
        conn.request("POST", "/v1/chat/completions", body=body, headers=headers)
        if kind == "hang-up-before":
            time.sleep(0.005)
            # Whether any of the answer had come when the client hung up.
            ready, _, _ = select.select([conn.sock], [], [], 0)
            record.update(outcome="hung_up", answer_started=bool(ready))
            return
        response = conn.getresponse()
        record["status"] = response.status
        if response.status != 200:
            response.read()
            record["outcome"] = f"status_{response.status}"
            record["error_kind"] = response.getheader("x-staunch-error-kind", "")
            return
        if kind == "hang-up-mid-stream":
            events, ended = read_stream(response, record, started, stop_after=2)
            # "stopped": hung up mid-stream; else the stream ended first.
            record.update(outcome="hung_up", answer_started=True, stream_end_before_hangup=ended != "stopped")
            return
        if kind in ("stream", "tools-stream"):
            _, ended = read_stream(response, record, started)
            record["outcome"] = {"done": "ok", "error_event": "stream_error", "cut": "stream_cut",
                                 "bad_event": "stream_bad_event"}[ended]
        else:
            data = response.read()
            try:
                json.loads(data)
                outcome = "ok"
                if kind == "tools" and not tool_arguments_ok(data):
                    outcome = "bad_tool_arguments"
            except ValueError:
                outcome = "bad_body"
            record["outcome"] = outcome
    except Exception as e:  # no answer, a reset, a timeout
        record.update(status=record.get("status", 0), outcome="no_answer", error=type(e).__name__)
    finally:
        record["latency"] = time.time() - started
        conn.close()


def read_proc(pid):
    out = {}
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    out["rss_kb"] = int(line.split()[1])
                elif line.startswith("Threads:"):
                    out["threads"] = int(line.split()[1])
        out["fds"] = len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        pass
    return out


def read_metrics(url):
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=10)
    try:
        conn.request("GET", "/metrics")
        text = conn.getresponse().read().decode("utf-8", "replace")
    finally:
        conn.close()
    series, families, counters, conns, keys = 0, {}, {}, None, set()
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        series += 1
        name_labels, _, value = line.rpartition(" ")
        keys.add(name_labels)
        name = name_labels.split("{", 1)[0]
        family = name
        for suffix in ("_bucket", "_sum", "_count"):
            if family.endswith(suffix):
                family = family[: -len(suffix)]
        families[family] = families.get(family, 0) + 1
        try:
            v = float(value)
        except ValueError:
            continue
        if name == "staunch_gateway_connections_open":
            conns = v
        if name.endswith("_total"):
            key = name_labels if "{" in name_labels else name
            counters[key] = v
    return {"series": series, "families": families, "counters": counters, "connections_open": conns,
            "bytes": len(text), "keys": keys}


def label_values(keys):
    """The distinct values each label name takes across the series."""
    values = {}
    for key in keys:
        for name, value in LABEL.findall(key):
            values.setdefault(name, set()).add(value)
    return values


def sample(url, pid, mock_pid, seen, label=None):
    """One sample; the series new since `seen` (which it updates) are kept
    under "added"; "before" and "after" keep the distinct values of each
    label too."""
    s = {"t": time.time(), "gateway": read_proc(pid)}
    if mock_pid:
        s["mock"] = read_proc(mock_pid)
    try:
        m = read_metrics(url)
        keys = m.pop("keys")
        m["added"] = sorted(keys - seen)
        seen |= keys
        if label:
            m["label_values"] = {k: sorted(v) for k, v in label_values(keys).items()}
        s["metrics"] = m
    except Exception as e:
        s["metrics"] = None
        s["metrics_error"] = type(e).__name__
    if label:
        s["label"] = label
    return s


def sampler(url, pid, mock_pid, every, samples, seen, stop):
    while not stop.wait(every):
        samples.append(sample(url, pid, mock_pid, seen))


def post(base, path):
    u = urllib.parse.urlsplit(base)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=10)
    try:
        conn.request("POST", path, body=b"{}", headers={"content-type": "application/json"})
        return conn.getresponse().read()
    finally:
        conn.close()


def get_json(base, path):
    u = urllib.parse.urlsplit(base)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=10)
    try:
        conn.request("GET", path)
        return json.loads(conn.getresponse().read())
    finally:
        conn.close()


def run(args):
    url = urllib.parse.urlsplit(args.gateway)
    key = os.environ.get("SOAK_CLIENT_KEY", "")
    rng = random.Random(args.seed)
    records, samples, threads = [], [], []
    stop = threading.Event()
    seen = set()
    idle = sample(url, args.pid, args.mock_pid, seen, "before")
    post(args.mock, "/_mock/reset")
    t0 = time.time() + 0.2
    watcher = threading.Thread(target=sampler, args=(url, args.pid, args.mock_pid, args.sample_every, samples, seen, stop))
    watcher.start()
    n = int(args.seconds * args.rate)
    share = 1.0 - args.cancel
    weights = [w * share / sum(w for _, w in MIX) for _, w in MIX]
    kinds = [k for k, _ in MIX] + ["hang-up-before", "hang-up-mid-stream"]
    weights += [args.cancel / 2, args.cancel / 2]
    unique = 0
    for i in range(n):
        at = t0 + i / args.rate
        kind = rng.choices(kinds, weights)[0]
        model = {"plain": "soak-chat", "stream": "soak-stream", "tools": "soak-tools",
                 "tools-stream": "soak-tools", "hang-up-before": "soak-chat",
                 "hang-up-mid-stream": "soak-stream"}[kind]
        if args.unique_models and rng.random() < args.unique_models:
            unique += 1
            model = f"soak-u{unique}"
        seed = rng.getrandbits(32)
        delay = at - time.time()
        if delay > 0:
            time.sleep(delay)
        record = {"t": at, "kind": kind, "model": model}
        records.append(record)
        thread = threading.Thread(target=one_request, args=(record, url, key, model, seed), daemon=True)
        thread.start()
        threads.append(thread)
        if len(threads) > 2000:
            threads = [th for th in threads if th.is_alive()]
    load_end = time.time()
    for thread in threads:
        thread.join(TIMEOUT + 5)
    drained = time.time()
    stop.set()
    watcher.join()
    # After the last answer, idle: what is still held (kept-alive upstream
    # connections included) once the clients are all gone.
    time.sleep(args.sample_every)
    after = sample(url, args.pid, args.mock_pid, seen, "after")
    try:
        stats = get_json(args.mock, "/_mock/stats")
        mock = {"requests": stats.get("requests", {}), "faults": stats.get("faults", {})}
    except Exception as e:
        mock = {"error": type(e).__name__}
    outage = [float(x) for x in args.outage.split(",")] if args.outage else None
    with open(args.out, "w") as f:
        json.dump({"t0": t0, "load_end": load_end, "drained": drained, "rate": args.rate,
                   "seconds": args.seconds, "cancel": args.cancel, "unique_models": args.unique_models,
                   "outage": outage, "before": idle, "after": after, "samples": samples,
                   "requests": records, "mock": mock}, f)
    late = sum(1 for r in records if r.get("sent", r["t"]) - r["t"] > 0.1)
    print(f"soak_load: {len(records)} requests sent in {load_end - t0:.0f} s ({late} left over 100 ms late), "
          f"drained {drained - load_end:.1f} s after", file=sys.stderr)


def percentile(xs, p):
    if not xs:
        return None
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]


def slope_per_minute(points):
    """Least-squares slope of (t seconds, value) points, per minute."""
    if len(points) < 2:
        return None
    n = len(points)
    mt = sum(t for t, _ in points) / n
    mv = sum(v for _, v in points) / n
    den = sum((t - mt) ** 2 for t, _ in points)
    if den == 0:
        return None
    return sum((t - mt) * (v - mv) for t, v in points) / den * 60


def report(args):
    data = json.load(open(args.run))
    t0 = data["t0"]
    seconds = data["seconds"]
    warmup = args.warmup
    bucket = args.bucket
    records = data["requests"]
    lines = []

    def out(s=""):
        print(s)
        lines.append(s)

    out(f"load: {data['rate']:g} requests/s for {seconds:g} s, open loop, a new connection each; "
        f"{data['cancel'] * 100:g} % hung up; warm-up {warmup:g} s")
    if data.get("outage"):
        a, b = data["outage"]
        out(f"the primary (the mock's OpenAI route) down from {a:g} s to {b:g} s")
    if data.get("unique_models"):
        out(f"{data['unique_models'] * 100:g} % of requests with a model name of their own")
    kinds = {}
    for r in records:
        kinds[r["kind"]] = kinds.get(r["kind"], 0) + 1
    out("mix: " + ", ".join(f"{k} {v}" for k, v in sorted(kinds.items())))
    lag = [r["sent"] - r["t"] for r in records if "sent" in r]
    out(f"driver: {len(records)} sent, lag behind schedule p99 {percentile(lag, 99) * 1000:.1f} ms, "
        f"max {max(lag) * 1000:.1f} ms; all drained {data['drained'] - data['load_end']:.1f} s after the last")

    # Per bucket.
    out()
    header = (f"{'from s':>6} {'sent':>5} {'answered':>8} {'errors by status':<22} {'in-band':>7} {'cut':>4} "
              f"{'no ans':>6} {'bad tool':>8} {'hung up':>7} {'p50 ms':>7} {'p99 ms':>7} {'p99 plain':>9} "
              f"{'p99 stream':>10} {'p99 ttft':>8}")
    out(header)
    rows = []
    n_buckets = int((seconds + bucket - 1e-9) // bucket)
    for b in range(n_buckets):
        lo, hi = t0 + b * bucket, t0 + (b + 1) * bucket
        rs = [r for r in records if lo <= r["t"] < hi]
        by = {}
        for r in rs:
            by[r.get("outcome", "none")] = by.get(r.get("outcome", "none"), 0) + 1
        statuses = {k[7:]: v for k, v in by.items() if k.startswith("status_")}
        ok = [r for r in rs if r.get("outcome") == "ok"]
        lat = [r["latency"] for r in ok]
        plain = [r["latency"] for r in ok if r["kind"] in ("plain", "tools")]
        stream = [r["latency"] for r in ok if r["kind"] in ("stream", "tools-stream")]
        ttft = [r["ttft"] for r in ok if "ttft" in r]
        row = {"from": b * bucket, "sent": len(rs), "answered": len(ok), "statuses": statuses,
               "in_band": by.get("stream_error", 0), "cut": by.get("stream_cut", 0) + by.get("stream_bad_event", 0),
               "no_answer": by.get("no_answer", 0) + by.get("bad_body", 0) + by.get("none", 0),
               "bad_tool": by.get("bad_tool_arguments", 0), "hung_up": by.get("hung_up", 0),
               "p50": percentile(lat, 50), "p99": percentile(lat, 99), "p99_plain": percentile(plain, 99),
               "p99_stream": percentile(stream, 99), "p99_ttft": percentile(ttft, 99)}
        rows.append(row)

        def ms(x):
            return "-" if x is None else f"{x * 1000:.0f}"

        st = ",".join(f"{k}:{v}" for k, v in sorted(statuses.items())) or "0"
        out(f"{row['from']:>6.0f} {row['sent']:>5} {row['answered']:>8} {st:<22} {row['in_band']:>7} "
            f"{row['cut']:>4} {row['no_answer']:>6} {row['bad_tool']:>8} {row['hung_up']:>7} {ms(row['p50']):>7} "
            f"{ms(row['p99']):>7} {ms(row['p99_plain']):>9} {ms(row['p99_stream']):>10} {ms(row['p99_ttft']):>8}")
    total = {}
    for r in records:
        total[r.get("outcome", "none")] = total.get(r.get("outcome", "none"), 0) + 1
    out("total: " + ", ".join(f"{k} {v}" for k, v in sorted(total.items())))
    hung = [r for r in records if r.get("outcome") == "hung_up"]
    before = [r for r in hung if r["kind"] == "hang-up-before"]
    out(f"hung up: {len(before)} before the answer ({sum(1 for r in before if r.get('answer_started'))} of them "
        f"after its first bytes had come), {len(hung) - len(before)} mid-stream "
        f"({sum(1 for r in hung if r.get('stream_end_before_hangup'))} of them after the stream had ended)")
    errors = {}
    for r in records:
        if r.get("outcome", "").startswith("status_"):
            k = f"{r['status']} {r.get('error_kind', '')}".strip()
            errors[k] = errors.get(k, 0) + 1
    if errors:
        out("errors to callers by kind: " + ", ".join(f"{k}: {v}" for k, v in sorted(errors.items())))

    # Resources.
    samples = [s for s in data["samples"] if s.get("gateway")]
    end_t = data["load_end"]
    post = [s for s in samples if t0 + warmup <= s["t"] <= end_t + 0.5]

    def value(s, what):
        if s is None:
            return None
        if what == "rss":
            v = s["gateway"].get("rss_kb")
            return None if v is None else v / 1024
        if what in ("fds", "threads"):
            return s["gateway"].get(what)
        if what == "mock_rss":
            v = (s.get("mock") or {}).get("rss_kb")
            return None if v is None else v / 1024
        m = s.get("metrics")
        if m is None:
            return None
        return m["series"] if what == "series" else m["connections_open"]

    def nearest(t):
        cands = [s for s in samples if s["t"] <= t + 2.5]
        return cands[-1] if cands else None

    warm = nearest(t0 + warmup)
    last = nearest(end_t)
    out()
    out(f"{'':<22} {'before':>8} {'warm-up end':>11} {'min..max after':>16} {'end':>8} {'drained':>8} "
        f"{'slope/min':>10} {'limit':>12} verdict")
    verdicts = {}
    specs = [
        ("RSS (MiB)", "rss", lambda w: 0.01 * w, "1 % of warm-up/min"),
        ("open fds", "fds", lambda w: 1.0, "±1/min"),
        ("threads", "threads", lambda w: 0.5, "±0.5/min"),
        ("open connections", "conns", lambda w: 1.0, "±1/min"),
        ("/metrics series", "series", None, "see below"),
        ("mock RSS (MiB)", "mock_rss", None, "(information)"),
    ]
    for name, what, limit, limit_text in specs:
        points = [((s["t"] - t0), value(s, what)) for s in post if value(s, what) is not None]
        slope = slope_per_minute(points)
        vals = [v for _, v in points]
        w, e = value(warm, what), value(last, what)
        b, a = value(data["before"], what), value(data["after"], what)
        verdict = ""
        if limit is not None and slope is not None and w is not None:
            ok = abs(slope) <= limit(w) if what != "rss" else slope <= limit(w)
            verdict = "PASS" if ok else "FAIL"
            verdicts[name] = ok

        def f(x, d=1):
            return "-" if x is None else f"{x:.{d}f}"

        d = 1 if what in ("rss", "mock_rss") else 0
        rng = f"{f(min(vals), d)}..{f(max(vals), d)}" if vals else "-"
        out(f"{name:<22} {f(b, d):>8} {f(w, d):>11} {rng:>16} {f(e, d):>8} {f(a, d):>8} "
            f"{'-' if slope is None else format(slope, '+.3f'):>10} {limit_text:>12} {verdict}")
    # The series: bounded when no label carries a value of its own per
    # request (a request id, a client's made-up model name), which would
    # show as a label with hundreds of values after 24,000 requests.
    if warm and last and warm.get("metrics") and last.get("metrics"):
        w, e = warm["metrics"]["series"], last["metrics"]["series"]
        out(f"/metrics: {w} series ({warm['metrics']['bytes']} bytes) at the warm-up end, "
            f"{e} ({last['metrics']['bytes']} bytes) at the end")
        # The series added after the warm-up, a histogram's lines as one.
        added = []
        for smp in samples:
            if smp["t"] < t0 + warmup or not smp.get("metrics"):
                continue
            groups = []
            for key in smp["metrics"].get("added", []):
                name, _, labels = key.partition("{")
                for suffix in ("_bucket", "_sum", "_count"):
                    if name.endswith(suffix):
                        name = name[: -len(suffix)]
                labels = ",".join(f'{k}="{v}"' for k, v in LABEL.findall(labels) if k not in ("le", "quantile"))
                group = f"{name}{{{labels}}}" if labels else name
                if group not in groups:
                    groups.append(group)
            added += [(smp["t"] - t0, g, len(smp["metrics"]["added"])) for g in groups]
        out(f"series added after the warm-up: {len(added)} label sets" + (":" if added else ""))
        for when, group, _ in added[:20]:
            out(f"  at {when:4.0f} s  {group}")
        if len(added) > 20:
            out(f"  ... and {len(added) - 20} more")
        values = (data["after"].get("metrics") or {}).get("label_values")
        if values:
            most = sorted(values.items(), key=lambda kv: -len(kv[1]))
            out("distinct values per label at the end: "
                + ", ".join(f"{k} {len(v)}" for k, v in most[:8]))
            # A histogram's bucket bounds and a summary's quantiles are
            # fixed lists.
            top = max((len(v) for k, v in most if k not in ("le", "quantile")), default=0)
            ok = top <= 32 and e <= 1.25 * w
            verdicts["/metrics series"] = ok
            out(f"/metrics cardinality: {'PASS' if ok else 'FAIL'} (limits: no label but le and quantile with over 32 values, "
                f"at most 25 % more series at the end than at the warm-up end: {top} values, "
                f"{(e - w) / w * 100:+.0f} %)")
        else:
            ok = e <= 1.25 * w
            verdicts["/metrics series"] = ok
            out(f"/metrics cardinality: {'PASS' if ok else 'FAIL'} on the count alone (the run kept no labels; "
                f"limit: at most 25 % more series at the end than at the warm-up end: {(e - w) / w * 100:+.0f} %)")

    # p99 stability over the buckets after the warm-up.
    p99s = [r["p99"] for r in rows if r["from"] >= warmup and r["p99"] is not None]
    if p99s:
        med = percentile(p99s, 50)
        worst = max(p99s)
        slope = slope_per_minute([(r["from"], r["p99"] * 1000) for r in rows
                                  if r["from"] >= warmup and r["p99"] is not None])
        ok = worst <= 1.5 * med
        verdicts["p99"] = ok
        out(f"p99 after the warm-up: median {med * 1000:.0f} ms, worst {worst * 1000:.0f} ms "
            f"({worst / med:.2f} x the median; limit 1.5 x), slope "
            f"{'-' if slope is None else format(slope, '+.1f')} ms/min: {'PASS' if ok else 'FAIL'}")

    # What the gateway counted (counters at the end of the load).
    if last and last.get("metrics"):
        sums = {}
        for key, v in last["metrics"]["counters"].items():
            name = key.split("{", 1)[0]
            if "{" in key and name in ("staunch_requests_total", "staunch_circuit_transitions_total",
                                       "staunch_gateway_connections_closed_total", "staunch_retry_giveups_total"):
                labels = key.split("{", 1)[1].rstrip("}")
                keep = ",".join(p for p in labels.split(",") if p.split("=")[0] in ("outcome", "tier", "to", "reason", "kind"))
                name = f"{name}{{{keep}}}"
            sums[name] = sums.get(name, 0) + v
        out("gateway counters at the end: " + "; ".join(f"{k} {v:.0f}" for k, v in sorted(sums.items())))
    if isinstance(data.get("mock"), dict) and "faults" in data["mock"]:
        out("mock: requests " + ", ".join(f"{k} {v}" for k, v in sorted(data["mock"]["requests"].items()))
            + "; faults served " + ", ".join(f"{k} {v}" for k, v in sorted(data["mock"]["faults"].items())))
    failed = [k for k, ok in verdicts.items() if not ok]
    out(f"verdict: {'PASS' if not failed else 'FAIL (' + ', '.join(failed) + ')'}")
    json.dump({"rows": rows, "verdicts": verdicts}, open(args.run.replace(".json", "-report.json"), "w"), indent=1)
    return 0 if not failed else 1


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    r = sub.add_parser("run")
    r.add_argument("--gateway", required=True)
    r.add_argument("--pid", type=int, required=True)
    r.add_argument("--mock", required=True)
    r.add_argument("--mock-pid", type=int)
    r.add_argument("--out", required=True)
    r.add_argument("--rate", type=float, default=40.0)
    r.add_argument("--seconds", type=float, default=600.0)
    r.add_argument("--cancel", type=float, default=0.10)
    r.add_argument("--sample-every", type=float, default=5.0)
    r.add_argument("--seed", type=int, default=27)
    r.add_argument("--outage")
    r.add_argument("--unique-models", type=float, default=0.0)
    p = sub.add_parser("report")
    p.add_argument("--run", required=True)
    p.add_argument("--warmup", type=float, default=60.0)
    p.add_argument("--bucket", type=float, default=60.0)
    args = parser.parse_args()
    if args.command == "run":
        run(args)
    else:
        sys.exit(report(args))


if __name__ == "__main__":
    main()
