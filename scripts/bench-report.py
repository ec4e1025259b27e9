#!/usr/bin/env python3
"""Turns the JSON lines of scripts/bench.sh (target/bench/results.jsonl) into docs/benchmarks.md."""

import json
import os
import platform
import subprocess
import statistics
import sys

PEERS = ["stompgate-before", "ceiling", "bun", "rabbitmq", "spring"]
NAMES = {
    "stompgate": "stompgate",
    "stompgate-before": "stompgate before (--baseline)",
    "stompgate-embedded": "stompgate, embedded bus (no Kafka)",
    "ceiling": "ceiling (bare tokio-tungstenite)",
    "bun": "Bun pub/sub (uWebSockets)",
    "rabbitmq": "RabbitMQ Web-STOMP",
    "spring": "Spring SimpleBroker",
}


def load(path):
    results, meta, versions, runs = {}, {}, {}, {}
    commands = []
    feed_driver = None
    pair = None
    frames = {}
    for line in open(path):
        line = line.strip()
        if not line:
            continue
        r = json.loads(line)
        k = r.get("kind")
        if k == "meta":
            if meta:
                commands.append(f"{meta['command']} ({meta.get('start')} → {meta.get('end')})")
                r.setdefault("first_start", meta.get("first_start", meta.get("start")))
            meta = r
        elif k == "version":
            versions[r["name"]] = r["version"]
        elif k == "frame":
            frames[r["target"]] = r
        elif k == "feed-driver":
            feed_driver = r
        elif k == "pair":
            pair = r
        elif k in ("result", "error", "skipped"):
            key = (str(r.get("scenario")), r.get("target"))
            # Runs of one cell back to back are numbered 1, 2, ...; a first run (or an
            # unnumbered one, e.g. from a later --resume) starts the cell afresh.
            if r.get("repeat") in (None, 1) or key not in runs:
                runs[key] = []
            runs[key].append(r)
    for key, rs in runs.items():
        results[key] = merge(rs)
    if commands:
        meta["earlier"] = commands
    if feed_driver:
        meta["feed_driver"] = feed_driver
    if pair:
        meta["pair"] = pair
    meta["frames"] = frames
    return results, meta, versions


def padding_text(frames):
    """How the peers' bodies were padded: measured at the start of the run (bench.sh
    `size_frames`), or the fixed defaults of an older results file."""
    sg = frames.get("stompgate", {}).get("stompgate_bytes")
    peers = [(NAMES.get(t, t), f["pad"]) for t, f in frames.items() if t != "stompgate"]
    if not sg or not peers:
        return ("Their bodies carry 100 (RabbitMQ, Spring) and 150 (ceiling, Bun) bytes of padding "
                "so that every MESSAGE is near the size of stompgate's.")
    pads = ", ".join(f"{n} {p}" for n, p in peers)
    return (f"stompgate's MESSAGE measured {sg} bytes of WebSocket payload at the start of the run; "
            f"each peer's body was padded to match ({pads} bytes of padding), so CPU per delivery "
            "is compared on equal bytes written (scenario 2 shows each one's measured size).")


def merge(rs):
    """One cell from its runs: the best run (highest rate for the ramp, lowest p99 for a
    fixed rate, whose p999 is also the lowest of the runs), with every run kept in `_runs`."""
    ok = [r for r in rs if r.get("kind") == "result"]
    if not ok:
        return rs[-1]
    if len(ok) == 1 and len(rs) == 1:
        return ok[0]
    if ok[0].get("mode") == "FanoutRamp":
        best = dict(max(ok, key=lambda r: r.get("max_delivered_per_s") or 0))
    else:
        best = dict(min(ok, key=lambda r: r["p99_ms"] if r.get("p99_ms") is not None else float("inf")))
        p999 = [r["p999_ms"] for r in ok if r.get("p999_ms") is not None]
        if p999:
            best["p999_ms"] = min(p999)
    best["_runs"] = rs
    return best


def noisy(values):
    """True when two back-to-back runs differ by more than 20%."""
    for a, b in zip(values, values[1:]):
        if not isinstance(a, (int, float)) or not isinstance(b, (int, float)):
            continue
        lo, hi = min(abs(a), abs(b)), max(abs(a), abs(b))
        if hi - lo > 1e-3 and hi > 1.2 * lo:
            return True
    return False


def sh(cmd):
    try:
        return subprocess.run(cmd, shell=True, capture_output=True, text=True, timeout=10).stdout.strip()
    except Exception:
        return ""


def fmt(v, unit=""):
    if v is None:
        return "—"
    if isinstance(v, str):
        return v
    if isinstance(v, float) and not v.is_integer():
        if abs(v) >= 100:
            s = f"{v:,.0f}"
        elif abs(v) >= 10:
            s = f"{v:.1f}"
        else:
            s = f"{v:.3g}" if abs(v) < 1 else f"{v:.2f}"
    else:
        s = f"{int(v):,}"
    return s + unit


def ratio(sg, peer, higher_better):
    if sg is None or peer is None:
        return "—"
    try:
        if higher_better:
            return f"{sg / peer:.2f}×" if peer else "∞"
        return f"{peer / sg:.2f}×" if sg else "∞"
    except ZeroDivisionError:
        return "—"


def table(results, scenario, targets, rows):
    """rows: (label, getter, higher_better or None, unit)"""
    present = [t for t in targets if (scenario, t) in results]
    if not present:
        return "_not run_\n"
    peers = [t for t in present if t != "stompgate"]
    head = "| figure | " + " | ".join(NAMES[t] for t in present)
    if "stompgate" in present:
        head += "".join(" | after vs before" if t == "stompgate-before" else f" | stompgate vs {t}" for t in peers)
    out = [head + " |", "|" + "---|" * (head.count("|"))]
    for label, get, hb, unit in rows:
        vals = {}
        for t in present:
            r = results[(scenario, t)]
            vals[t] = get(r) if r.get("kind") == "result" else None
        cells = []
        for t in present:
            r = results[(scenario, t)]
            if r.get("kind") != "result":
                cells.append(f"_{r.get('error', 'no result')}_")
                continue
            cell = fmt(vals[t], unit)
            rs = r.get("_runs")
            if rs:
                # Every run's figure beside the best, and a flag when two back-to-back runs
                # differ by more than 20%.
                each = [get(x) if x.get("kind") == "result" else None for x in rs]
                cell += " (runs: " + " / ".join(fmt(v, unit) for v in each) + ")"
                if noisy(each):
                    cell += " **noisy**"
            cells.append(cell)
        line = f"| {label} | " + " | ".join(cells)
        if "stompgate" in present:
            for t in peers:
                line += " | " + (ratio(vals["stompgate"], vals[t], hb) if hb is not None else "")
        out.append(line + " |")
    return "\n".join(out) + "\n"


def notes_for(results, scenario, targets):
    lines = []
    for t in targets:
        r = results.get((scenario, t))
        if not r or r.get("kind") != "result":
            continue
        bits = []
        if r.get("failed"):
            bits.append(f"{r['failed']} of {r['connections']} connections failed to connect+subscribe")
        if r.get("closed_by_server"):
            bits.append(f"{r['closed_by_server']} connections closed by the server")
        if r.get("out_of_order"):
            bits.append(f"{r['out_of_order']} messages arrived out of order")
        if r.get("first_error"):
            bits.append(f"first error: `{r['first_error'][:160]}`")
        if bits:
            lines.append(f"- {NAMES[t]}: " + "; ".join(bits) + ".")
    return ("\n" + "\n".join(lines) + "\n") if lines else ""


def pair_cpu(pair):
    """stompgate's CPU per delivery over the ceiling's, side by side: (median, lowest, highest)."""
    rs = [r["a_us"] / r["b_us"] for r in pair["rounds"] if r.get("b_us")]
    return statistics.median(rs), min(rs), max(rs)


def pair_section(pair):
    if not pair or not pair.get("rounds"):
        return ""
    med, lo, hi = pair_cpu(pair)
    o = [f"### CPU per delivery side by side (`scripts/pair.sh`, {len(pair['rounds'])} rounds)\n",
         f"In turns, a busy moment of the shared machine lands on one server and not on the other. Here "
         f"stompgate and the ceiling each take scenario 2's load at {pair['rate']:,} deliveries/s at the same "
         f"time, each from its own load generator, so the ratio within a round is what to read. A build "
         f"against itself gives a median within about 2% of 1. This ratio decides the CPU goal below.\n",
         "| round | stompgate (µs) | ceiling (µs) | stompgate ÷ ceiling |",
         "| --- | --- | --- | --- |"]
    for i, r in enumerate(pair["rounds"], 1):
        o.append(f"| {i} | {fmt(r['a_us'])} | {fmt(r['b_us'])} | {r['a_us'] / r['b_us']:.3f} |")
    o.append(f"| median | | | **{med:.3f}** (rounds {lo:.3f}–{hi:.3f}) |\n")
    return "\n".join(o) + "\n"


def main():
    results, meta, versions = load(sys.argv[1])
    targets = [t for t in ["stompgate"] + PEERS if any(k[1] == t for k in results)]
    g = lambda key: (lambda r: r.get(key))  # noqa: E731
    mb = lambda key: (lambda r: r[key] / 1024 if r.get(key) is not None else None)  # noqa: E731

    def psi(r):
        a, b = r.get("scenario_cpu_psi_before"), r.get("scenario_cpu_psi_after")
        if a is None and b is None:
            return None
        return f"{fmt(a)} → {fmt(b)}"

    # CPU per delivery: CPU seconds (user + system) of the process over the measuring
    # window ÷ deliveries read in it. Unlike a p99 it barely moves between sittings.
    cpu_rows = [
        ("server CPU per delivery (µs)", g("server_cpu_us_per_delivery"), False, ""),
        ("load generator CPU per delivery (µs)", g("loadgen_cpu_us_per_delivery"), None, ""),
        ("CPU pressure before → after the scenario (PSI some avg10, %)", psi, None, ""),
    ]
    # The peers' bodies are padded to stompgate's frame size (measured at start): bytes
    # written cost kernel time, so CPU per delivery is compared on equal bytes.
    size_row = ("bytes of WebSocket payload per delivered MESSAGE", g("bytes_per_delivery"), None, "")
    o = []
    o.append("# Benchmarks\n")
    o.append(
        "Produced by `scripts/bench.sh` (load generator: `src/bin/loadgen/`; ceiling: "
        "`src/bin/ceiling.rs`; Bun: `bench/bun-peer/server.js`; peers: `scripts/bench-peers.sh`, `bench/spring-broker/`). "
        "Every figure below comes from one run on one machine, all servers measured in the same run "
        "with the same load generator. Ratios say how many times better stompgate is "
        "(above 1: stompgate better; below 1: worse). CPU per delivery is the server process's CPU time "
        "(user + system, from `/proc/<pid>/stat`) over the measuring window ÷ the deliveries read in that "
        "window; the load generator's own is beside it. On a shared machine it barely moves between "
        "sittings while a p99 moves several times over, so it is the figure that ranks servers; the CPU "
        "pressure (`/proc/pressure/cpu`, `some` avg10) before and after each scenario says how busy the "
        "machine was.\n"
    )
    o.append("## Machine and run\n")
    mem_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    cpu = sh("grep -m1 'model name' /proc/cpuinfo | cut -d: -f2").strip()
    o.append(f"- Cores: {os.cpu_count()} ({cpu or 'unknown CPU'}), memory: {mem_gib:.0f} GiB, "
             f"kernel: {platform.release()}")
    o.append(f"- Open-file limit per process: {meta.get('fd_limit', '?')} (hard limit of the build machines: "
             "one process holds at most ~19,900 sockets, so idle connections are measured at 19,000)")
    o.append(f"- Run: {meta.get('first_start', meta.get('start', '?'))} → {meta.get('end', '?')}; load average before "
             f"{meta.get('load_before', '?')}, after {meta.get('load_after', '?')}; CPU pressure (PSI, share of "
             f"time some task waited for a CPU) before: {meta.get('psi_before', '?')}, after: "
             f"{meta.get('psi_after', '?')}")
    if meta.get("earlier"):
        o.append("- Commands: " + "; then ".join(f"`{c.split(' (')[0]}` ({c.split(' (', 1)[1]}" for c in meta["earlier"])
                 + f"; then `{meta.get('command')}` ({meta.get('start')} → {meta.get('end')}), which replaced "
                 "only the cells it ran")
    else:
        o.append(f"- Command: `{meta.get('command', 'scripts/bench.sh')}`")
    o.append("- The 2 cores are shared by the server, the load generator and, on the build machines, other "
             "work (compilers of other jobs). Treat differences under ~20% as noise; the load generator's "
             "CPU is reported beside the server's.")
    reps = {}
    for (s_, t), r in sorted(results.items()):
        n = len(r.get("_runs") or [r])
        if n > 1:
            reps.setdefault((s_, n), []).append(NAMES.get(t, t))
    if reps:
        how = {"1": "back to back on one server start",
               "2": "on one server start each, the servers taking turns round after round where they "
                    "share the machine (stompgate, its baseline, the ceiling and Bun are all started, "
                    "and each round runs each once; RabbitMQ and Spring run theirs back to back)"}
        o.append("- Repeats: " + "; ".join(f"scenario {s_} ran {n} times {how.get(s_, 'back to back')} "
                                           f"({', '.join(ts)})" for (s_, n), ts in sorted(reps.items()))
                 + ". The cell shows the best run (scenario 1: the highest rate; scenario 2: the lowest p99, "
                 "and the lowest p999 of the runs) and every run's figure in brackets; **noisy** marks a figure "
                 "that moved more than 20% between two runs of the same server. The other scenarios run once, so "
                 "that the whole run stays near 40 minutes on 2 cores: 3 and 4 measure RSS and connect time "
                 "(which barely move), 5 is already 60 s long, 6 compares the gateway with a plain consumer "
                 "inside one run, 7–9 are stompgate's alone and 10 measures the feed's path. The CPU pressure of each run is in each "
                 "table's last row.")
    if "stompgate-before" in targets:
        o.append(f"- `stompgate before`: an older stompgate binary ({versions.get('stompgate-before', '?')}), "
                 "given with `--baseline`, run in the same sitting right after the current one on scenario 1 "
                 "and in turns with it on scenario 2, started with the same flags where it has them. The column `after vs before` is the "
                 "ratio as elsewhere (above 1: the current build is better).")
    o.append("")
    o.append("## Versions\n")
    for k in ["stompgate", "bun", "rabbitmq", "spring", "kafka"]:
        if k in versions:
            o.append(f"- {k}: {versions[k]}")
    o.append("- ceiling: `src/bin/ceiling.rs` at the same commit (tokio-tungstenite, 4 KiB read buffer, the frames "
             "queued for a connection sent as one WebSocket message, as stompgate does by default)")
    o.append("- Peers run at their defaults, except the RabbitMQ node's open-file limit (20,000, "
             "`/etc/rabbitmq/rabbitmq-env.conf`; the Debian default of 1,024 stops it near 1,000 clients). "
             "Spring's embedded Tomcat caps connections at 8,192 by default (`server.tomcat.max-connections`), "
             "which shows in scenarios 3 and 4. Spring's SimpleBroker sends no RECEIPT for SUBSCRIBE, so its "
             "subscriptions are confirmed by a first message (probes published until every subscriber has "
             "one); the others by RECEIPT.")
    o.append("- Messages: stompgate gets chat SENDs to `/app/market/M<i>/chat` with body "
             "`{\"text\":\"@@<dest>:<seq>:<nanos>@@\"}` and delivers its JSON chat record on "
             "`/topic/market/M<i>`; RabbitMQ and Spring get the same body SENT to `/topic/market.M<i>` and "
             "deliver it as sent; the ceiling and Bun's peer (the same STOMP subset) send it on in one MESSAGE "
             "encoded once per SEND. " + padding_text(meta.get("frames", {})) + " "
             "Latency is from the "
             "publisher's write to the subscriber's read, one clock.")
    o.append("")

    o.append("## 1. Fan-out: 1,000 subscribers on 10 destinations, one publisher ramping\n")
    o.append("Highest delivered messages/s holding p99 ≤ 50 ms with nothing lost (rate doubled from "
             "2,000/s each 4 s step up to 16M/s, then 3 bisection steps; a step also fails if it delivers < 90% of its "
             "target; a failed step is tried twice more before it counts, so that one stall of another job on "
             "the shared machine does not end the ramp).\n")
    o.append(table(results, "1", targets, [
        ("max delivered msgs/s", g("max_delivered_per_s"), True, ""),
        ("p50 at that rate (ms)", g("p50_ms"), None, ""),
        ("p99 at that rate (ms)", g("p99_ms"), None, ""),
        ("p999 at that rate (ms)", g("p999_ms"), None, ""),
        ("server CPU at that rate (% of a core)", g("server_cpu_pct"), None, "%"),
        ("load generator CPU (% of a core)", g("loadgen_cpu_pct"), None, "%"),
    ] + cpu_rows))
    o.append(notes_for(results, "1", targets))

    o.append("## 2. Latency at 100,000 delivered msgs/s (1,000 subscribers, 10 destinations)\n")
    o.append(table(results, "2", targets, [
        ("delivered msgs/s", g("delivered_per_s"), True, ""),
        ("p50 (ms)", g("p50_ms"), False, ""),
        ("p99 (ms; best run)", g("p99_ms"), False, ""),
        ("p999 (ms; best run)", g("p999_ms"), False, ""),
        ("max (ms)", g("max_ms"), False, ""),
        ("lost", g("lost"), None, ""),
        ("server CPU (% of a core)", g("server_cpu_pct"), None, "%"),
        ("load generator CPU (% of a core)", g("loadgen_cpu_pct"), None, "%"),
        ("server RSS (MB)", mb("server_rss_kb"), False, ""),
    ] + cpu_rows + [size_row]))
    o.append(notes_for(results, "2", targets))
    o.append(pair_section(meta.get("pair")))

    o.append("## 3. Idle connections: 19,000 connected and subscribed\n")
    o.append("Clients send a STOMP heart-beat every 10 s, as STOMP clients do (RabbitMQ's Web-STOMP closes "
             "connections silent for 60 s). RSS per connection = (RSS with the connections − RSS before) / held.\n")
    o.append(table(results, "3", targets, [
        ("connections held", g("held"), True, ""),
        ("RSS per connection (KB)", g("rss_per_conn_kb"), False, ""),
        ("server RSS (MB)", mb("server_rss_kb"), False, ""),
        ("time to connect+subscribe (s)", g("connect_s"), False, ""),
        ("idle server CPU (% of a core)", g("idle_server_cpu_pct"), None, "%"),
        cpu_rows[2],
    ]))
    o.append(notes_for(results, "3", targets))

    o.append("## 4. Connect storm: 10,000 clients CONNECT and SUBSCRIBE\n")
    o.append("256 set-ups in flight at a time (TCP connect, WebSocket upgrade, CONNECT→CONNECTED, "
             "SUBSCRIBE→RECEIPT).\n")
    o.append(table(results, "4", targets, [
        ("time for all (s)", g("connect_s"), False, ""),
        ("subscribed", g("ready"), True, ""),
        ("connect+subscribe per s", g("connect_per_s"), True, ""),
        ("server CPU (% of a core)", g("server_cpu_pct"), None, "%"),
        ("load generator CPU (% of a core)", g("loadgen_cpu_pct"), None, "%"),
        cpu_rows[2],
    ]))
    o.append(notes_for(results, "4", targets))

    o.append("## 5. Slow consumer: scenario 2 plus one client that stops reading, 60 s\n")

    def rss_first(r):
        s = r.get("series") or []
        return s[0]["server_rss_kb"] / 1024 if s and s[0].get("server_rss_kb") else None

    def rss_last(r):
        s = r.get("series") or []
        return s[-1]["server_rss_kb"] / 1024 if s and s[-1].get("server_rss_kb") else None

    def vs2(t):
        def f(r):
            r2 = results.get(("2", t))
            if not r2 or r2.get("kind") != "result" or not r2.get("p99_ms") or r.get("p99_ms") is None:
                return None
            return (r["p99_ms"] / r2["p99_ms"] - 1) * 100
        return f

    o.append(table(results, "5", targets, [
        ("others' p99 over 60 s (ms)", g("p99_ms"), False, ""),
        ("others' p999 (ms)", g("p999_ms"), False, ""),
        ("others lost", g("lost"), None, ""),
        ("delivered msgs/s", g("delivered_per_s"), True, ""),
        ("server RSS at 5 s (MB)", rss_first, None, ""),
        ("server RSS at 60 s (MB)", rss_last, False, ""),
    ] + cpu_rows + [size_row]))
    rows = []
    for t in targets:
        r = results.get(("5", t))
        if r and r.get("kind") == "result":
            d = vs2(t)(r)
            ser = ", ".join(f"{x['p99_ms']:.1f}" for x in r.get("series", []))
            rss = ", ".join(f"{(x.get('server_rss_kb') or 0) / 1024:.0f}" for x in r.get("series", []))
            rows.append(f"- {NAMES[t]}: p99 vs scenario 2: {fmt(d, '%') if d is not None else '—'}; "
                        f"p99 per 5 s (ms): {ser}; RSS per 5 s (MB): {rss}")
    if rows:
        o.append("\n".join(rows) + "\n")
    o.append(notes_for(results, "5", targets))

    o.append("## 6. Through Kafka (real broker): the gateway beside a plain consumer\n")
    r6 = results.get(("6", "stompgate"))
    if not r6:
        o.append("_not run_\n")
    elif r6.get("kind") != "result":
        o.append(f"_skipped: {r6.get('error')}_\n")
    else:
        o.append("Path: the load generator's chat SEND → the gateway's Kafka producer → broker (topic `chat`) → "
                 "the gateway's consumer → 1,000 sockets; latency from the publisher's SEND to the subscriber's "
                 "read. In the same run a **plain consumer** (rdkafka, in the load generator, `--kafka-plain`) "
                 "reads the same records from the same topic and measures SEND → its `poll()` with the same "
                 "token and clock: the difference between the two is what the gateway adds over a plain "
                 "consumer (its consume → hub → outbox → socket write, and the fan-out to 100 sockets per "
                 "record). Beside them, the gateway's own histogram `stompgate_delivery_delay_seconds` (event "
                 "timestamp, ms resolution, → socket write; Prometheus buckets 0.5, 1, 2, 5, 10, 20, 50 ms …, so a "
                 "percentile reads as ≤ the bucket's edge), read from `/metrics` before and after the window. "
                 "The **first copy** rows take, for each record, only the copy that reached a subscriber first: "
                 "set against the plain consumer they measure the gateway's consume → socket hop alone, where "
                 "the every-copy rows add the fan-out to 100 sockets and the load generator reading all of them "
                 "(the spread between the first and the last copy of a record). "
                 "At 100,000 deliveries/s (1,000 records/s) and at light load, 1,000 deliveries/s (10 records/s).\n")
        o.append("Settings (src/bus/kafka/mod.rs, the gateway's defaults, unchanged here): producer `acks=all`, "
                 "`enable.idempotence=true`, `linger.ms=1` (a record waits at most 1 ms for a batch), "
                 "`socket.nagle.disable=true`; consumer `fetch.wait.max.ms=10` (the longest the broker holds "
                 "a fetch that has nothing to return; a record that arrives meanwhile is answered at once), "
                 "`socket.nagle.disable=true`, `auto.offset.reset=latest`, no commits; the "
                 "gateway's consumer runs on a thread of its own and fans each record out from there (at light "
                 "load it writes its equal part of the copies itself, the idle workers the rest). The plain "
                 "consumer uses the same consumer settings, every partition assigned at its end. One broker "
                 "(KRaft), on the same 2 cores.\n")

        def gw(key):
            return lambda r: f"≤ {fmt(r[key])}" if r.get(key) is not None else ("> 5,000" if r.get("gateway_hist_count") else None)

        def p50_p99(prefix):
            # "p50 / p99" of `<prefix>_p50_ms` and `<prefix>_p99_ms`, when the run has them.
            return lambda r: (f"{fmt(r.get(prefix + '_p50_ms'))} / {fmt(r[prefix + '_p99_ms'])}"
                              if r.get(prefix + "_p99_ms") is not None else None)

        kafka_rows = [
            ("delivered msgs/s", g("delivered_per_s"), None, ""),
            ("records through Kafka in the window (plain consumer)", g("plain_records"), None, ""),
            ("SEND → socket through the gateway, p50 (ms)", g("p50_ms"), None, ""),
            ("SEND → plain consumer, p50 (ms)", g("plain_p50_ms"), None, ""),
            ("SEND → socket through the gateway, p99 (ms)", g("p99_ms"), None, ""),
            ("SEND → plain consumer, p99 (ms)", g("plain_p99_ms"), None, ""),
            ("**gateway adds at p99 (ms)**", g("gateway_adds_p99_ms"), None, ""),
            ("gateway adds at p50 (ms)", g("gateway_adds_p50_ms"), None, ""),
            ("SEND → first copy of each record at any socket, p50 / p99 (ms)",
             p50_p99("first"), None, ""),
            ("**gateway adds to the first copy at p99 (ms)**", g("first_adds_p99_ms"), None, ""),
            ("gateway adds to the first copy at p50 (ms)", g("first_adds_p50_ms"), None, ""),
            ("each copy behind its record's first copy (the fan-out), p50 / p99 (ms)",
             p50_p99("behind_first"), None, ""),
            ("SEND → socket p999 / plain p999 (ms)",
             lambda r: f"{fmt(r.get('p999_ms'))} / {fmt(r.get('plain_p999_ms'))}", None, ""),
            ("gateway histogram p50 (ms)", gw("gateway_hist_p50_ms"), None, ""),
            ("gateway histogram p99 (ms)", gw("gateway_hist_p99_ms"), None, ""),
            ("gateway histogram p999 (ms)", gw("gateway_hist_p999_ms"), None, ""),
            ("lost", g("lost"), None, ""),
            ("server CPU (% of a core)", g("server_cpu_pct"), None, "%"),
        ] + cpu_rows
        for s_, label in [("6", "100,000 deliveries/s"), ("6-light", "light load, 1,000 deliveries/s")]:
            o.append(f"**{label}**\n")
            o.append(table(results, s_, ["stompgate"], kafka_rows))
            o.append(notes_for(results, s_, ["stompgate"]))
        if ("6-light", "ceiling") in results:
            o.append("**The fan-out alone, light load.** The every-copy rows above include the fan-out of each "
                     "record to 100 sockets on these 2 cores, shared with the load generator reading them; a "
                     "plain consumer does no fan-out. To show that part apart, the load generator measures how "
                     "far each copy trails its record's first copy (its read − the first copy's read; the first "
                     "copy counts as 0), and the bare broadcaster runs the same light load in the same run, "
                     "without Kafka (a SEND goes straight to its fan-out; at 10 records/s both fan out one "
                     "record at a time). stompgate's column is its Kafka run above; the embedded-bus column is "
                     "the same light load through stompgate without Kafka, a SEND going straight to its "
                     "fan-out as in the broadcaster. At 100,000 deliveries/s Kafka hands the gateway records "
                     "in fetch batches, so the two would not fan out the same input: that load is not "
                     "compared.\n")
            spread_rows = [
                ("delivered msgs/s", g("delivered_per_s"), None, ""),
                ("copies measured", g("behind_first_copies"), None, ""),
                ("each copy behind its record's first copy, p50 (ms)", g("behind_first_p50_ms"), False, ""),
                ("**each copy behind its record's first copy, p99 (ms)**", g("behind_first_p99_ms"), False, ""),
                ("each copy behind its record's first copy, p999 (ms)", g("behind_first_p999_ms"), False, ""),
            ]
            o.append(table(results, "6-light", ["stompgate", "stompgate-embedded", "ceiling"], spread_rows))
            o.append(notes_for(results, "6-light", ["stompgate-embedded", "ceiling"]))

    o.append("## 7. History memory: 10,000 destinations × 100 messages (stompgate only)\n")
    o.append("The peers keep no per-destination history, so this runs against stompgate alone. One million "
             "chat SENDs (`/app/market/M<i>/chat`, `{\"text\":\"history <i> <k> …\"}`, 40 bytes of padding) "
             "from 4 publishers, 100 in a row to each of 10,000 markets, a receipt every 1,000 SENDs awaited "
             "before the next; no subscribers. The gateway runs with `--send-rate 0`; first with "
             "`--history-bytes 1073741824` (1 GiB, room for all), then at the default cap (128 MiB). Kept "
             "messages = (destinations − evicted) × 100 (each destination is written once, in a row, so one "
             "evicted is gone whole). RSS includes the chat ledger (recent message ids of up to 1,000 markets).\n")

    def mib(key):
        return lambda r: r[key] / 2**20 if r.get(key) is not None else None

    hist_rows = [
        ("history cap (--history-bytes, MiB)", mib("history_bytes_cap"), None, ""),
        ("SENDs confirmed", g("sends_confirmed"), None, ""),
        ("SENDs per s while filling", g("sends_per_s"), None, ""),
        ("server RSS before (MB)", mb("server_rss_before_kb"), None, ""),
        ("server RSS after (MB)", mb("server_rss_kb"), None, ""),
        ("stompgate_history_bytes (MiB)", mib("history_bytes"), None, ""),
        ("history within the cap", lambda r: {True: "yes", False: "**no**"}.get(r.get("history_cap_holds")), None, ""),
        ("destinations evicted", g("history_evictions"), None, ""),
        ("messages kept", g("kept_messages"), None, ""),
        ("history bytes per kept message", g("history_bytes_per_message"), None, ""),
        ("RSS bytes per kept message", g("rss_bytes_per_message"), None, ""),
        ("RSS per destination (KB)", g("rss_per_dest_kb"), None, ""),
    ]
    for s_, label in [("7", "cap 1 GiB"), ("7b", "default cap, 128 MiB")]:
        o.append(f"**{label}**\n")
        o.append(table(results, s_, ["stompgate"], hist_rows))
        o.append(notes_for(results, s_, ["stompgate"]))

    o.append("## 8. Reconnect storm: 10,000 clients resume at once while live delivery goes on (stompgate only)\n")
    o.append("The peers have no resume (`x-resume-after`), so this runs against stompgate alone. 1,000 live "
             "subscribers on 100 destinations at 20,000 deliveries/s. A baseline step (12 s) measures their "
             "latency; then, in a second step of the same length and rate, each destination's latest `x-cursor` "
             "is taken at its start (by one watcher connection per destination), 10,000 clients connect "
             "(CONNECT → CONNECTED, 256 in flight) and, once all are connected and at least 3 s have passed, "
             "all send SUBSCRIBE with `x-resume-after:<cursor>` and a receipt at the same instant. Resume "
             "latency: SUBSCRIBE sent → its RECEIPT (which carries `x-recovered`).\n")
    o.append(table(results, "8", ["stompgate"], [
        ("live p99 without the storm (ms)", lambda r: (r.get("baseline") or {}).get("p99_ms"), None, ""),
        ("live p99 during the storm (ms)", g("p99_storm_ms"), None, ""),
        ("live p99 during ÷ without", g("p99_storm_ratio"), None, "×"),
        ("live p50 without / during (ms)",
         lambda r: f"{fmt((r.get('baseline') or {}).get('p50_ms'))} / {fmt(r.get('p50_ms'))}", None, ""),
        ("live p999 without / during (ms)",
         lambda r: f"{fmt((r.get('baseline') or {}).get('p999_ms'))} / {fmt(r.get('p999_ms'))}", None, ""),
        ("live lost without / during",
         lambda r: f"{fmt((r.get('baseline') or {}).get('lost'))} / {fmt(r.get('lost'))}", None, ""),
        ("resuming clients connected", g("resume_connected"), None, ""),
        ("time to connect them (s)", g("resume_connect_s"), None, ""),
        ("RECEIPTs for the resuming SUBSCRIBEs", g("resume_receipts"), None, ""),
        ("x-recovered:true", g("recovered_true"), None, ""),
        ("x-recovered:false", g("recovered_false"), None, ""),
        ("resume latency p50 (ms)", g("resume_p50_ms"), None, ""),
        ("resume latency p99 (ms)", g("resume_p99_ms"), None, ""),
        ("resume latency max (ms)", g("resume_max_ms"), None, ""),
        ("all RECEIPTs in (s after the SUBSCRIBEs)", g("resume_all_receipts_s"), None, ""),
        ("messages to the resumed clients (x-replay:true)",
         lambda r: f"{fmt(r.get('resume_messages'))} ({fmt(r.get('resume_replayed'))})", None, ""),
        ("server RSS (MB)", mb("server_rss_kb"), None, ""),
    ] + cpu_rows))
    r8 = results.get(("8", "stompgate"))
    if r8 and r8.get("kind") == "result" and r8.get("resume_first_error"):
        o.append(f"- first error of a resuming client: `{r8['resume_first_error'][:160]}`\n")
    o.append(notes_for(results, "8", ["stompgate"]))

    o.append("## 9. Memory after a burst: every outbox overloaded, then RSS each second for 60 s (stompgate only)\n")
    o.append("1,000 subscribers on 10 destinations; the publisher attempts 1.2M deliveries/s (12,000 "
             "SENDs/s in all, 1,200 per destination) for 5 s, far above what the machine "
             "delivers, so every outbox fills; then nothing is published and the server's RSS is read every "
             "second for 60 s.\n")
    o.append(table(results, "9", ["stompgate"], [
        ("deliveries/s attempted", g("attempted_per_s"), None, ""),
        ("deliveries/s read during the burst", g("delivered_per_s_burst"), None, ""),
        ("subscribers closed by the server in the burst", g("closed_in_burst"), None, ""),
        ("RSS pre-burst (MB)", mb("rss_pre_kb"), None, ""),
        ("RSS peak (MB)", mb("rss_peak_kb"), None, ""),
        ("RSS +20 s after the burst (MB)", mb("rss_20s_kb"), None, ""),
        ("RSS +60 s after the burst (MB)", mb("rss_60s_kb"), None, ""),
        ("first under 2× pre-burst (s after the burst)", g("under_2x_after_s"), None, ""),
        cpu_rows[2],
    ]))
    r9 = results.get(("9", "stompgate"))
    if r9 and r9.get("kind") == "result":
        ser = ", ".join(f"{(x.get('server_rss_kb') or 0) / 1024:.0f}" for x in r9.get("series", []))
        o.append(f"RSS each second from the burst's start (MB; the burst is the first "
                 f"{fmt(r9.get('burst_s'))} s): {ser}\n")
    o.append(notes_for(results, "9", ["stompgate"]))

    o.append("## 10. Exchange feed: fake exchanges → `stompgate feed` → Kafka → gateway → subscribers\n")
    r10 = results.get(("10", "stompgate"))
    fd = meta.get("feed_driver") or {}
    if not r10:
        o.append("_not run_\n")
    elif r10.get("kind") != "result":
        o.append(f"_skipped: {r10.get('error')}_\n")
    else:
        o.append("Two local fake exchanges (`tests/py/fake_exchange.py` driven by `scripts/bench-feed.py`: Upbit's "
                 "message shapes in binary frames, Bithumb's in text frames, DEFAULT format) feed `stompgate feed` "
                 "(its defaults: idempotent producer, `acks=all`) with 10 markets `KRW-M0`…`KRW-M9` registered "
                 "by `--markets`; the gateway consumes topic `trades` and delivers each trade to "
                 "`/topic/market/<market>`, where the load generator holds 100 subscribers, 10 per market. Trades "
                 "are sent from the Upbit side in 10 ms ticks, each with `trade_timestamp` = the send time (ms); "
                 "the delay is from that timestamp to the subscriber's read (wall clock, ms resolution), so it "
                 "covers the exchange's socket, the feed's parse and produce, Kafka and the gateway. Trades are "
                 "conflatable: a subscriber that falls behind gets the latest trade of a market instead of every "
                 "one (counted by `stompgate_conflated_total`).\n")
        per_market = (r10.get("ready") or 1) / (r10.get("destinations") or 1)
        delivered_trades = (r10.get("deliveries") or 0) / per_market
        rows = [
            ("trades sent by the exchange (per s)", lambda r: fd.get("sent_per_s"), None, ""),
            ("trades sent in all", lambda r: fd.get("trades_sent"), None, ""),
            ("trades taken in by the feed (`stompgate_feed_trades_in_total`)", lambda r: fd.get("feed_trades_in"), None, ""),
            ("trades delivered per market subscriber, in all", lambda r: round(delivered_trades), None, ""),
            ("share delivered to each subscriber",
             lambda r: f"{100 * delivered_trades / fd['trades_sent']:.1f}%" if fd.get("trades_sent") else None, None, ""),
            ("**trades/s through the bridge** (sent/s × share delivered)",
             lambda r: round(fd["sent_per_s"] * min(1.0, delivered_trades / fd["trades_sent"]))
             if fd.get("trades_sent") and fd.get("sent_per_s") else None, None, ""),
            ("conflated / dropped by the gateway in the window",
             lambda r: f"{fmt(r.get('conflated'))} / {fmt(r.get('dropped'))}", None, ""),
            ("deliveries per s (all subscribers)", g("delivered_per_s"), None, ""),
            ("exchange → subscriber delay p50 (ms)", g("p50_ms"), None, ""),
            ("exchange → subscriber delay p99 (ms)", g("p99_ms"), None, ""),
            ("exchange → subscriber delay p999 (ms)", g("p999_ms"), None, ""),
            ("exchange → subscriber delay max (ms)", g("max_ms"), None, ""),
            ("server CPU (% of a core)", g("server_cpu_pct"), None, "%"),
            cpu_rows[2],
        ]
        o.append(table(results, "10", ["stompgate"], rows))
        o.append(notes_for(results, "10", ["stompgate"]))

    o.append("## Targets\n")

    def res(s, t):
        r = results.get((s, t))
        return r if r and r.get("kind") == "result" else None

    def verdict(ok):
        return "**met**" if ok else "**not met**"

    adds_goal_ms = 1  # what the gateway may add over a plain consumer, at p99

    def adds_verdict(x, p50):
        # The path through the gateway holds a consumer of the same records: when the
        # plain consumer alone is slower by more than the goal's margin, its p99 was
        # disturbed (the shared machine) and bounds nothing. Not shown counts as not met.
        if x < -adds_goal_ms:
            shown = f"; at p50 it adds {p50} ms" if p50 is not None else ""
            return ("**not met** (not shown by this run: the plain consumer alone was slower "
                    f"at p99 than the path through the gateway{shown})")
        return verdict(x <= adds_goal_ms)

    sg1 = res("1", "stompgate")
    if sg1:
        parts = []
        for t, need in [("rabbitmq", 5.0), ("spring", 5.0), ("ceiling", 0.7)]:
            p = res("1", t)
            if p and p.get("max_delivered_per_s"):
                x = sg1["max_delivered_per_s"] / p["max_delivered_per_s"]
                parts.append(f"{x:.2f}× {NAMES[t]} (goal ≥ {need}×) {verdict(x >= need)}")
        o.append("- Scenario 1: " + ("; ".join(parts) if parts else "no peer result"))
    base = []
    for s_, key, hb, label in [("1", "max_delivered_per_s", True, "max delivered msgs/s"),
                               ("2", "p99_ms", False, "p99 at 100k/s (best run)"),
                               ("2", "p999_ms", False, "p999 at 100k/s (best run)"),
                               ("2", "server_cpu_us_per_delivery", False, "server CPU per delivery at 100k/s")]:
        a, b = res(s_, "stompgate"), res(s_, "stompgate-before")
        if not a or not b or a.get(key) is None or not b.get(key):
            continue
        x = a[key] / b[key] if hb else (b[key] / a[key] if a[key] else float("inf"))
        runs_noisy = any(noisy([r.get(key) for r in c.get("_runs") or []]) for c in (a, b))
        now_runs = [r.get(key) for r in a.get("_runs") or [a] if r.get(key) is not None]
        before_runs = [r.get(key) for r in b.get("_runs") or [b] if r.get(key) is not None]
        # Every run worse than every run before it: a shift, not noise, even under 20%.
        every_run_worse = bool(now_runs and before_runs) and (
            max(now_runs) < min(before_runs) if hb else min(now_runs) > max(before_runs))
        if x < 0.9 and every_run_worse:
            word = (f"**worse in every run ({(1 - x) * 100:.0f}%): a regression, at the edge "
                    f"of the 20% noise threshold**")
        elif x >= 0.8:
            word = "**within noise or better**"
        elif runs_noisy:
            word = "**worse, but its runs moved more than 20%: not conclusive**"
        else:
            word = "**regression beyond noise**"
        base.append(f"{label} {fmt(a[key])} now vs {fmt(b[key])} before ({x:.2f}×"
                    f"{', runs noisy' if runs_noisy else ''}) {word}")
    if base:
        o.append("- Before/after (issue 15, no regression beyond noise, i.e. more than 20% worse): " + "; ".join(base))
    sg2 = res("2", "stompgate")
    if sg2:
        o.append(f"- Scenario 2: p99 {sg2['p99_ms']} ms (goal ≤ 2 ms) "
                 f"{verdict(sg2['p99_ms'] <= 2 and sg2['lost'] == 0)}")
        c2 = res("2", "ceiling")
        if c2 and c2.get("p99_ms") is not None and sg2.get("p999_ms") is not None:
            n = len(sg2.get("_runs") or [sg2])
            ok = sg2["p99_ms"] <= c2["p99_ms"] and sg2["p999_ms"] <= c2["p999_ms"]
            o.append(f"- Scenario 2 tail (best of {n}): p99 {sg2['p99_ms']} / p999 {sg2['p999_ms']} ms vs the bare "
                     f"broadcaster's {c2['p99_ms']} / {c2['p999_ms']} ms (goal ≤ it, same run) {verdict(ok)}; CPU "
                     f"pressure {psi(sg2) or '—'} / {psi(c2) or '—'}")
    for s_, label in [("6", "at 100k deliveries/s"), ("6-light", "at 1,000 deliveries/s")]:
        sg6 = res(s_, "stompgate")
        if not sg6:
            continue
        line = f"- Scenario {s_}: p99 {sg6['p99_ms']} ms through Kafka {label}"
        if s_ == "6":
            line += f" (goal ≤ 20 ms) {verdict(sg6['p99_ms'] <= 20 and sg6['lost'] == 0)}"
        if sg6.get("gateway_adds_p99_ms") is not None:
            x = sg6["gateway_adds_p99_ms"]
            line += (f"; the gateway adds {x} ms at p99 over a plain consumer of the same records, "
                     f"every copy (p99 {sg6.get('plain_p99_ms')} ms; goal ≤ {adds_goal_ms} ms) "
                     f"{adds_verdict(x, sg6.get('gateway_adds_p50_ms'))}")
        if sg6.get("first_adds_p99_ms") is not None:
            x = sg6["first_adds_p99_ms"]
            line += (f"; to the first copy of each record it adds {x} ms at p99 "
                     f"(goal ≤ {adds_goal_ms} ms) {adds_verdict(x, sg6.get('first_adds_p50_ms'))}")
        c6 = res(s_, "ceiling")
        if sg6.get("behind_first_p99_ms") is not None and c6 and c6.get("behind_first_p99_ms") is not None:
            x, y = sg6["behind_first_p99_ms"], c6["behind_first_p99_ms"]
            line += (f"; of the every-copy figure, the fan-out alone (each copy behind its record's first "
                     f"copy) is {x} ms at p99, the bare broadcaster's {y} ms in the same run")
            e6 = res(s_, "stompgate-embedded")
            if e6 and e6.get("behind_first_p99_ms") is not None:
                line += (f"; through the embedded bus, without Kafka, stompgate's fan-out is "
                         f"{e6['behind_first_p50_ms']} / {e6['behind_first_p99_ms']} ms at p50 / p99 (the "
                         f"broadcaster's {c6.get('behind_first_p50_ms')} / {y} ms)")
        o.append(line)
    sg3 = res("3", "stompgate")
    if sg3 and sg3.get("rss_per_conn_kb") is not None:
        beside = []
        for t in ["ceiling", "bun"]:
            p = res("3", t)
            if p and p.get("rss_per_conn_kb") is not None:
                beside.append(f"{NAMES[t]} {p['rss_per_conn_kb']} KB at {p.get('held')}")
        o.append(f"- Scenario 3: {sg3['rss_per_conn_kb']} KB per idle connection at {sg3.get('held')} "
                 f"connections (goal ≤ 4 KB at 19,000) {verdict(sg3['rss_per_conn_kb'] <= 4 and sg3.get('held') == 19000)}"
                 + (f"; beside it: {', '.join(beside)}" if beside else ""))
    for s_ in ["2", "1"]:
        sgc = res(s_, "stompgate")
        if not sgc or sgc.get("server_cpu_us_per_delivery") is None:
            continue
        x = sgc["server_cpu_us_per_delivery"]
        parts = [f"stompgate {x} µs"]
        pair = meta.get("pair") if s_ == "2" else None
        for t, goal in [("ceiling", "≤ the bare broadcaster's"), ("bun", "aim: ≤ Bun's")]:
            p = res(s_, t)
            if p and p.get("server_cpu_us_per_delivery") is not None:
                if t == "ceiling" and pair and pair.get("rounds"):
                    # The goal is judged side by side; the best runs in turns are shown too.
                    med, lo, hi = pair_cpu(pair)
                    parts.append(f"{NAMES[t]} {p['server_cpu_us_per_delivery']} µs (best runs in turns); "
                                 f"side by side, stompgate ÷ ceiling {med:.3f} (median of {len(pair['rounds'])} "
                                 f"rounds, {lo:.3f}–{hi:.3f}; goal ≤ 1, the bare broadcaster's) "
                                 f"{verdict(med <= 1)}")
                    continue
                parts.append(f"{NAMES[t]} {p['server_cpu_us_per_delivery']} µs ({goal}) "
                             f"{verdict(x <= p['server_cpu_us_per_delivery'])}")
        o.append(f"- Scenario {s_}: server CPU per delivery: " + "; ".join(parts))
        break
    sg4 = res("4", "stompgate")
    if sg4:
        o.append(f"- Scenario 4: 10,000 clients in {sg4['connect_s']} s (goal ≤ 2 s) "
                 f"{verdict(sg4['connect_s'] <= 2 and sg4['ready'] == 10000)}")
    sg5 = res("5", "stompgate")
    if sg5 and sg2:
        d = (sg5["p99_ms"] / sg2["p99_ms"] - 1) * 100 if sg2["p99_ms"] else 0
        a, b = rss_first(sg5), rss_last(sg5)
        flat = a is not None and b is not None and b <= a * 1.1 + 5
        o.append(f"- Scenario 5: others' p99 {sg5['p99_ms']} ms, {d:+.0f}% vs scenario 2 (goal within 10%) "
                 f"{verdict(d <= 10 and sg5['lost'] == 0)}; RSS {fmt(a)} → {fmt(b)} MB "
                 f"{'flat' if flat else 'not flat'}")
    for s_ in ["7", "7b"]:
        r = res(s_, "stompgate")
        if r:
            o.append(f"- Scenario {s_}: history {fmt((r.get('history_bytes') or 0) / 2**20)} MiB under a cap of "
                     f"{fmt(r['history_bytes_cap'] / 2**20)} MiB {verdict(r.get('history_cap_holds') is True)}; "
                     f"{fmt(r.get('history_bytes_per_message'))} history bytes and "
                     f"{fmt(r.get('rss_bytes_per_message'))} RSS bytes per kept message")
    r = res("8", "stompgate")
    if r:
        o.append(f"- Scenario 8: {r.get('resume_receipts')}/{r.get('resume_clients')} resumed, "
                 f"{r.get('recovered_true')} with x-recovered:true; resume p99 {r.get('resume_p99_ms')} ms; "
                 f"live p99 {r.get('p99_no_storm_ms')} → {r.get('p99_storm_ms')} ms during the storm "
                 f"({fmt(r.get('p99_storm_ratio'))}×), lost {(r.get('baseline') or {}).get('lost')} / {r.get('lost')}")
    r = res("9", "stompgate")
    if r:
        o.append(f"- Scenario 9: RSS {fmt(mb('rss_pre_kb')(r))} MB before, peak {fmt(mb('rss_peak_kb')(r))} MB, "
                 f"+20 s {fmt(mb('rss_20s_kb')(r))} MB, +60 s {fmt(mb('rss_60s_kb')(r))} MB: back under 2× "
                 f"pre-burst within 60 s (goal) {verdict(r.get('under_2x_within_60s') is True)}")
    r = res("10", "stompgate")
    fd = meta.get("feed_driver") or {}
    if r and fd.get("trades_sent"):
        per_market = (r.get("ready") or 1) / (r.get("destinations") or 1)
        share = (r.get("deliveries") or 0) / per_market / fd["trades_sent"]
        o.append(f"- Scenario 10: {fmt(fd.get('sent_per_s'))} trades/s offered by the exchange, "
                 f"{100 * min(share, 1):.1f}% reached every subscriber; exchange → subscriber delay p50 "
                 f"{r.get('p50_ms')} ms, p99 {r.get('p99_ms')} ms (CPU pressure {psi(r) or '—'})")
    o.append("")
    o.append("Raw results (one JSON line per run, with every ramp step): `target/bench/results.jsonl` "
             "after a run.\n")
    print("\n".join(o))


if __name__ == "__main__":
    main()
