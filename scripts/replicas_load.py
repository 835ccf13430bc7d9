#!/usr/bin/env python3
"""The load of scripts/replicas.sh, and its report. Standard library only.

  replicas_load.py run --gateways URL,URL,URL --mock URL --out FILE.json
                       [--rate R] [--flaky-rate F] [--seconds S]
                       [--warmup-rate W] [--warmup-seconds T]
  replicas_load.py report --run FILE.json --marks FILE --limit-rpm N

`run` sends chat requests at a fixed rate (open loop: request i leaves at
start + i / rate, whatever the answers before it), round-robin across the
gateways: `quota-*` requests at --rate (after --warmup-seconds at
--warmup-rate, which empties the shared bucket) and `flaky-*` requests at
--flaky-rate. Each request is recorded (when it left, the gateway, its
status, its latency, the model that answered). Every 250 ms it also reads
the mock's /_mock/stats and each gateway's /metrics. It waits for every
request to end (30 s timeout each) and writes it all as JSON.

`report` cuts the run into the phases of the marks file (lines
`NAME EPOCH_SECONDS`, the last one ends the run) and prints a table per
phase.
"""

import argparse
import http.client
import json
import sys
import threading
import time
import urllib.parse
from concurrent.futures import ThreadPoolExecutor

TIMEOUT = 30.0
SAMPLE_EVERY = 0.25
BODY = {"messages": [{"role": "user", "content": "hello"}], "max_tokens": 16}


class Connections(threading.local):
    """One kept-alive connection per thread and host."""

    def __init__(self):
        self.by_host = {}

    def request(self, base, method, path, body=None):
        """One request; sent again once on a fresh connection when a kept-
        alive one turns out closed by the server (its idle timeout) before
        any answer, as HTTP clients do."""
        url = urllib.parse.urlsplit(base)
        headers = {"content-type": "application/json"} if body is not None else {}
        for attempt in (1, 2):
            conn = self.by_host.get(url.netloc)
            reused = conn is not None
            if conn is None:
                conn = http.client.HTTPConnection(url.hostname, url.port, timeout=TIMEOUT)
                self.by_host[url.netloc] = conn
            try:
                conn.request(method, path, body=body, headers=headers)
                response = conn.getresponse()
                data = response.read()
                return response.status, dict(response.getheaders()), data
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError):
                conn.close()
                self.by_host.pop(url.netloc, None)
                if not reused or attempt == 2:
                    raise
            except Exception:
                conn.close()
                self.by_host.pop(url.netloc, None)
                raise


CONNS = Connections()


def one_request(record, base, model):
    body = json.dumps(dict(BODY, model=model))
    started = time.time()
    try:
        status, headers, data = CONNS.request(base, "POST", "/v1/chat/completions", body)
        headers = {k.lower(): v for k, v in headers.items()}
        record.update(
            status=status,
            model=headers.get("x-staunch-model", ""),
            kind=headers.get("x-staunch-error-kind", ""),
        )
        if status != 200:
            record["body"] = data[:300].decode("utf-8", "replace")
    except Exception as e:  # no answer at all: lost
        record.update(status=0, model="", kind=type(e).__name__)
    record["latency"] = time.time() - started


def schedule(pool, records, lock, gateways, model, segments, t0):
    """Submits requests of `model` at the rate of each (seconds, rate)
    segment in turn, round-robin across the gateways."""
    i = 0
    start = t0
    for seconds, rate in segments:
        if rate <= 0:
            start += seconds
            continue
        n = int(seconds * rate)
        for k in range(n):
            at = start + k / rate
            delay = at - time.time()
            if delay > 0:
                time.sleep(delay)
            record = {"t": at, "gateway": i % len(gateways), "route": model}
            with lock:
                records.append(record)
            pool.submit(one_request, record, gateways[i % len(gateways)], model)
            i += 1
        start += seconds


def parse_metrics(text):
    """The staunch_redis_* and circuit-transition series, summed by name
    and the labels that matter here."""
    out = {}
    for line in text.splitlines():
        if line.startswith("#") or not line.startswith(("staunch_redis_", "staunch_circuit_transitions_total")):
            continue
        try:
            series, value = line.rsplit(" ", 1)
            value = float(value)
        except ValueError:
            continue
        name = series.split("{", 1)[0]
        if name == "staunch_circuit_transitions_total":
            if 'to="open"' not in series:
                continue
        elif name == "staunch_redis_shared":
            name += "_quota" if 'kind="quota"' in series else "_breakers"
            out[name] = min(out.get(name, 1.0), value)
            continue
        out[name] = out.get(name, 0.0) + value
    return out


def monitor(gateways, mock, samples, stop):
    conns = Connections()
    while not stop.is_set():
        sample = {"t": time.time(), "gateways": []}
        try:
            _, _, data = conns.request(mock, "GET", "/_mock/stats")
            stats = json.loads(data)
            sample["mock"] = {"requests": stats.get("requests", {}), "faults": stats.get("faults", {})}
        except Exception:
            sample["mock"] = None
        for base in gateways:
            try:
                _, _, data = conns.request(base, "GET", "/metrics")
                sample["gateways"].append(parse_metrics(data.decode("utf-8", "replace")))
            except Exception:
                sample["gateways"].append(None)
        samples.append(sample)
        stop.wait(SAMPLE_EVERY)


def run(args):
    gateways = args.gateways.split(",")
    records, samples, lock, stop = [], [], threading.Lock(), threading.Event()
    t0 = time.time() + 0.2
    watcher = threading.Thread(target=monitor, args=(gateways, args.mock, samples, stop))
    watcher.start()
    # Enough workers for the rate times the slowest answer expected.
    with ThreadPoolExecutor(max_workers=args.workers) as pool:
        quota = threading.Thread(
            target=schedule,
            args=(pool, records, lock, gateways, "quota-test",
                  [(args.warmup_seconds, args.warmup_rate), (args.seconds, args.rate)], t0),
        )
        flaky = threading.Thread(
            target=schedule,
            args=(pool, records, lock, gateways, "flaky-test",
                  [(args.warmup_seconds, 0), (args.seconds, args.flaky_rate)], t0),
        )
        quota.start()
        flaky.start()
        quota.join()
        flaky.join()
    time.sleep(SAMPLE_EVERY * 2)
    stop.set()
    watcher.join()
    with open(args.out, "w") as f:
        json.dump({"t0": t0, "requests": records, "samples": samples,
                   "warmup_seconds": args.warmup_seconds, "rate": args.rate,
                   "flaky_rate": args.flaky_rate, "gateways": gateways}, f)
    lost = sum(1 for r in records if r.get("status") != 200)
    print(f"replicas_load: {len(records)} requests sent, {lost} not answered with 200", file=sys.stderr)


def percentile(xs, p):
    if not xs:
        return None
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]


def lookup(sample, path):
    value = sample
    for key in path:
        if value is None:
            return None
        value = value[key] if isinstance(key, int) else value.get(key, 0.0)
    return value


def at(samples, t, path):
    """The value of `path` in the last sample taken at or before `t` that
    has it (a read that failed is skipped; 0 before the first)."""
    found = 0.0
    for s in samples:
        if s["t"] > t:
            break
        value = lookup(s, path)
        if value is not None:
            found = value
    return found


def report(args):
    data = json.load(open(args.run))
    marks = []
    for line in open(args.marks):
        name, when = line.rsplit(" ", 1)
        marks.append((name.strip(), float(when)))
    samples = [s for s in data["samples"] if s.get("mock") is not None]
    per_second = args.limit_rpm / 60.0
    n_gw = len(data["gateways"])
    phases = [(marks[i][0], marks[i][1], marks[i + 1][1]) for i in range(len(marks) - 1)]

    def mock_delta(key, start, end, field="requests"):
        return at(samples, end, ["mock", field, key]) - at(samples, start, ["mock", field, key])

    def gw_delta(metric, start, end):
        return sum(at(samples, end, ["gateways", g, metric]) - at(samples, start, ["gateways", g, metric])
                   for g in range(n_gw))

    # A provider whose own bucket is the limit (starting empty, as the
    # shared one after the warm-up): what it would refuse of what the
    # mock received, sample by sample.
    refused_by_provider = {}
    bucket, last_t, last_n = 0.0, None, None
    # From the end of the warm-up (its first phase's start).
    start_model = phases[1][1] if len(phases) > 1 else phases[0][1]
    for s in samples:
        n = s["mock"]["requests"].get("openai", 0)
        if s["t"] < start_model:
            last_t, last_n = s["t"], n
            continue
        if last_t is None:
            last_t, last_n = s["t"], n
            continue
        bucket = min(float(args.limit_rpm), bucket + (s["t"] - last_t) * per_second)
        came = n - last_n
        over = max(0.0, came - bucket)
        bucket = max(0.0, bucket - came)
        refused_by_provider[s["t"]] = over
        last_t, last_n = s["t"], n

    rows = []
    baseline = None
    for name, start, end in phases:
        reqs = [r for r in data["requests"] if start <= r["t"] < end]
        quota = [r for r in reqs if r["route"] == "quota-test"]
        errors = {}
        for r in reqs:
            if r.get("status") != 200:
                errors[r.get("status", 0)] = errors.get(r.get("status", 0), 0) + 1
        lat = [r["latency"] for r in quota if r.get("status") == 200]
        p50, p99 = percentile(lat, 50), percentile(lat, 99)
        if baseline is None:
            baseline = (p50, p99)
        admitted = mock_delta("openai", start, end)
        allowed = per_second * (end - start)
        if name == "warm-up":
            # The shared bucket starts full: the limit, then its rate.
            allowed += args.limit_rpm
        would_refuse = sum(v for t, v in refused_by_provider.items() if start < t <= end)
        # When a gateway first decided locally (staunch_redis_shared = 0),
        # and when all three shared again after that (or after the start,
        # if one was local then).
        local_at = shared_again = None
        was_local = False
        for s in samples:
            if s["t"] < start or s["t"] > end or any(g is None for g in s["gateways"]):
                continue
            shared = [g.get("staunch_redis_shared_quota", 0.0) == 1.0 for g in s["gateways"]]
            if not all(shared):
                was_local = True
                if local_at is None:
                    local_at = s["t"] - start
            elif was_local and shared_again is None:
                shared_again = s["t"] - start
        rows.append({
            "phase": name, "seconds": end - start,
            "sent": len(reqs), "answered": sum(1 for r in reqs if r.get("status") == 200),
            "errors": errors,
            "admitted": admitted, "allowed": allowed,
            "over": (admitted - allowed) / allowed * 100 if allowed else 0.0,
            "provider_429": mock_delta("rate_limit", start, end, "faults"),
            "would_refuse": would_refuse,
            "fallbacks": gw_delta("staunch_redis_fallbacks_total", start, end),
            "opens": gw_delta("staunch_circuit_transitions_total", start, end),
            "published": gw_delta("staunch_redis_breaker_opens_published_total", start, end),
            "received": gw_delta("staunch_redis_breaker_opens_received_total", start, end),
            "p50_added": None if p50 is None else (p50 - baseline[0]) * 1000,
            "p99_added": None if p99 is None else (p99 - baseline[1]) * 1000,
            "p50": p50, "p99": p99,
            "shared_after": shared_again,
            "local_at": local_at,
        })

    def ms(x):
        return "-" if x is None else f"{x * 1000:.1f}"

    def added(x):
        return "-" if x is None else f"{x:+.1f}"

    print(f"\nlimit {args.limit_rpm}/min ({per_second:.2f}/s) shared by {n_gw} gateways; "
          f"offered {data['rate']}/s to the limited target, {data['flaky_rate']}/s to the flaky one")
    print(f"{'phase':<16} {'s':>5} {'sent':>5} {'answered':>8} {'errors':>8} {'admitted':>8} {'allowed':>7} "
          f"{'over':>7} {'429s':>4} {'bucket':>6} {'local':>6} {'opens':>5} {'pub':>4} {'recv':>4} "
          f"{'p50 ms':>7} {'p99 ms':>7} {'p50 +':>6} {'p99 +':>6} {'local at':>8} {'shared at':>9}")
    for r in rows:
        errors = ",".join(f"{k}:{v}" for k, v in sorted(r["errors"].items())) or "0"
        print(f"{r['phase']:<16} {r['seconds']:>5.1f} {r['sent']:>5} {r['answered']:>8} {errors:>8} "
              f"{r['admitted']:>8.0f} {r['allowed']:>7.1f} {r['over']:>+6.1f}% {r['provider_429']:>4.0f} "
              f"{r['would_refuse']:>6.0f} {r['fallbacks']:>6.0f} {r['opens']:>5.0f} {r['published']:>4.0f} "
              f"{r['received']:>4.0f} {ms(r['p50']):>7} {ms(r['p99']):>7} {added(r['p50_added']):>6} "
              f"{added(r['p99_added']):>6} "
              f"{'-' if r['local_at'] is None else format(r['local_at'], '.2f') + ' s':>8} "
              f"{'-' if r['shared_after'] is None else format(r['shared_after'], '.2f') + ' s':>9}")
    print("\nadmitted: requests the mock's limited route received (the shared quota's admissions);")
    print("allowed: the limit's rate over the phase (and the full bucket in the warm-up); 429s: the mock's own (it has no rate limit);")
    print("bucket: what a provider bucket at the limit would have refused; local: quota decisions")
    print("made locally (staunch_redis_fallbacks_total); opens/pub/recv: circuit openings (all),")
    print("published to and received from the other replicas; p50/p99: the limited route's")
    print("latency, +: added vs the first phase; local at: when the first replica decided locally")
    print("(staunch_redis_shared = 0), shared at: when all three shared again, from the phase's")
    print("start (read every 250 ms).")
    json.dump(rows, open(args.run.replace(".json", "-report.json"), "w"), indent=1)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    r = sub.add_parser("run")
    r.add_argument("--gateways", required=True)
    r.add_argument("--mock", required=True)
    r.add_argument("--out", required=True)
    r.add_argument("--rate", type=float, default=15.0)
    r.add_argument("--flaky-rate", type=float, default=6.0)
    r.add_argument("--seconds", type=float, default=120.0)
    r.add_argument("--warmup-rate", type=float, default=45.0)
    r.add_argument("--warmup-seconds", type=float, default=8.0)
    r.add_argument("--workers", type=int, default=64)
    p = sub.add_parser("report")
    p.add_argument("--run", required=True)
    p.add_argument("--marks", required=True)
    p.add_argument("--limit-rpm", type=float, required=True)
    args = parser.parse_args()
    run(args) if args.command == "run" else report(args)


if __name__ == "__main__":
    main()
