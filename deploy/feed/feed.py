#!/usr/bin/env python3
"""Demo market feed: produces trade records to Kafka as stompgate's producer contract says.

Record: key = market id (e.g. KRW-BTC); value = JSON
  {"market","exchange","price","qty","side","ts","trade_id"}  (price and qty as decimal strings)

  python3 deploy/feed/feed.py --brokers 127.0.0.1:9092 --rate 5
  python3 deploy/feed/feed.py --brokers "$(cat .cache/kafka/bootstrap)" --count 100

--brokers defaults to $KAFKA_BOOTSTRAP. Runs until --count records or --duration seconds
(0 = no limit), or SIGTERM/SIGINT.
"""
import argparse
import json
import os
import random
import signal
import sys
import time
import uuid
from decimal import ROUND_HALF_UP, Decimal

from confluent_kafka import Producer

START_PRICES = {"KRW-BTC": "95000000", "KRW-ETH": "4800000", "KRW-XRP": "3200",
                "KRW-SOL": "280000", "KRW-DOGE": "550"}
EXCHANGES = ["upbit", "bithumb", "korbit"]


def tick_size(price: Decimal) -> Decimal:
    if price >= 1000000:
        return Decimal("1000")
    if price >= 10000:
        return Decimal("10")
    if price >= 100:
        return Decimal("1")
    return Decimal("0.01")


class Market:
    def __init__(self, market_id: str, rng: random.Random):
        self.id = market_id
        self.rng = rng
        self.price = Decimal(START_PRICES.get(market_id, "10000"))

    def next_trade(self) -> dict:
        step = tick_size(self.price)
        self.price = max(step, self.price + step * self.rng.randint(-3, 3))
        qty = Decimal(self.rng.lognormvariate(-3, 1.2)).quantize(Decimal("0.0001"), ROUND_HALF_UP)
        qty = max(qty, Decimal("0.0001"))
        return {"market": self.id, "exchange": self.rng.choice(EXCHANGES),
                "price": format(self.price.normalize(), "f"), "qty": format(qty.normalize(), "f"),
                "side": self.rng.choice(["buy", "sell"]), "ts": int(time.time() * 1000),
                "trade_id": uuid.uuid4().hex}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--brokers", default=os.environ.get("KAFKA_BOOTSTRAP", "127.0.0.1:9092"))
    ap.add_argument("--topic", default=os.environ.get("FEED_TOPIC", "trades"))
    ap.add_argument("--markets", default=os.environ.get("FEED_MARKETS", "KRW-BTC,KRW-ETH,KRW-XRP"))
    ap.add_argument("--rate", type=float, default=float(os.environ.get("FEED_RATE", "5")),
                    help="trades per second per market")
    ap.add_argument("--count", type=int, default=int(os.environ.get("FEED_COUNT", "0")),
                    help="stop after this many records (0: no limit)")
    ap.add_argument("--duration", type=float, default=float(os.environ.get("FEED_DURATION", "0")),
                    help="stop after this many seconds (0: no limit)")
    ap.add_argument("--seed", type=int, default=None)
    args = ap.parse_args(argv)

    rng = random.Random(args.seed)
    markets = [Market(m.strip(), rng) for m in args.markets.split(",") if m.strip()]
    if not markets or args.rate <= 0:
        ap.error("need at least one market and a positive --rate")
    producer = Producer({"bootstrap.servers": args.brokers, "acks": "all",
                         "enable.idempotence": True, "linger.ms": 5,
                         "client.id": "stompgate-demo-feed"})
    stopping = False

    def stop(*_):
        nonlocal stopping
        stopping = True
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)

    failed = 0

    def delivered(err, _msg):
        nonlocal failed
        if err is not None:
            failed += 1
            print(f"feed: delivery failed: {err}", file=sys.stderr)

    interval = 1.0 / (args.rate * len(markets))
    start = time.monotonic()
    sent = 0
    next_at = start
    last_report = start
    while not stopping:
        if args.count and sent >= args.count:
            break
        if args.duration and time.monotonic() - start >= args.duration:
            break
        m = markets[sent % len(markets)]
        rec = m.next_trade()
        while True:
            try:
                producer.produce(args.topic, key=m.id, value=json.dumps(rec, separators=(",", ":")),
                                 on_delivery=delivered)
                break
            except BufferError:
                producer.poll(0.1)
        sent += 1
        producer.poll(0)
        now = time.monotonic()
        if now - last_report >= 10:
            print(f"feed: {sent} trades produced to {args.topic}", file=sys.stderr, flush=True)
            last_report = now
        next_at += interval
        delay = next_at - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        else:
            next_at = time.monotonic()
    left = producer.flush(30)
    print(f"feed: {sent} trades produced to {args.topic} at {args.brokers}, "
          f"{failed} failed, {left} unconfirmed", file=sys.stderr, flush=True)
    return 1 if failed or left else 0


if __name__ == "__main__":
    sys.exit(main())
