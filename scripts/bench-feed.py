#!/usr/bin/env python3
"""The exchanges of benchmark scenario 10: two local fake exchanges (tests/py/fake_exchange.py,
Upbit's binary frames and Bithumb's text frames, the real message shapes) for `stompgate feed`.

    scripts/bench-feed.py URLS_FILE RATE SECONDS MARKET...

Writes `upbit=<url>` and `bithumb=<url>` to URLS_FILE, waits (up to 60 s) until the feed has
subscribed every market on Upbit and the file named by BENCH_FEED_GO (if set) exists, then sends RATE trades/s in all (spread over the markets,
in 10 ms ticks, trade_timestamp = now) for SECONDS, and prints one JSON line with what it
sent. Loopback only; it stops by itself.
"""
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "py"))
from fake_exchange import FakeExchange  # noqa: E402


def main():
    urls_file, rate, secs, markets = sys.argv[1], float(sys.argv[2]), float(sys.argv[3]), sys.argv[4:]
    upbit, bithumb = FakeExchange("upbit", binary=True), FakeExchange("bithumb", binary=False)
    tmp = Path(urls_file + ".tmp")
    tmp.write_text(f"upbit={upbit.url}\nbithumb={bithumb.url}\n")
    tmp.rename(urls_file)
    t_sub = upbit.wait_subscribed(markets, timeout=60.0)
    go = os.environ.get("BENCH_FEED_GO")
    deadline = time.monotonic() + 60
    while go and not os.path.exists(go) and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(1.0)  # the subscribers are in; the feed's producer has connected
    tick, sent, owed = 0.01, 0, 0.0
    t0 = time.monotonic()
    nxt = t0
    while time.monotonic() - t0 < secs:
        owed += rate * tick
        n = int(owed)
        owed -= n
        for i, m in enumerate(markets):
            k = n // len(markets) + (1 if i < n % len(markets) else 0)
            if k:
                upbit.burst(m, k)
                sent += k
        nxt += tick
        time.sleep(max(0.0, nxt - time.monotonic()))
    elapsed = time.monotonic() - t0
    print(json.dumps({"trades_sent": sent, "secs": round(elapsed, 3), "sent_per_s": round(sent / elapsed),
                      "subscribed_after_s": round(t_sub, 3)}), flush=True)
    time.sleep(2.0)
    upbit.stop()
    bithumb.stop()


if __name__ == "__main__":
    main()
