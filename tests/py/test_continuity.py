"""Nothing lost at the edges, against real Kafka (and real nginx), as a user sees it:

- a replica started after records were produced serves them as history (x-history);
- a record produced the instant /readyz turns 200 arrives, on a broker started moments before;
- two replicas behind nginx, one killed with SIGKILL mid-stream: its clients resume on the
  other with x-resume-after and receive every record exactly once, in order per partition,
  trades and chat on the same market.
"""
import json
import threading
import time
import uuid

import pytest

from gateway_support import StompClient, http_get, trade, wait_until

pytestmark = [pytest.mark.gateway_kafka, pytest.mark.kafka, pytest.mark.timeout(300)]


def _market() -> str:
    return f"KRW-C{uuid.uuid4().hex[:8].upper()}"


def _subscribe(client: StompClient, destination: str, headers: dict) -> dict:
    """SUBSCRIBE with extra headers; returns the RECEIPT's headers."""
    rid = f"r-{uuid.uuid4()}"
    got = {}

    def on_receipt(frame, orig=client.on_receipt):
        if frame.headers.get("receipt-id") == rid:
            got.update(frame.headers)
        orig(frame)

    client.on_receipt = on_receipt
    client.conn.subscribe(destination, id=f"s-{uuid.uuid4().hex[:6]}",
                          headers={"receipt": rid, **headers})
    client.wait_receipt(rid, timeout=15)
    return got


def _chat(market: str, n: int) -> tuple[dict, dict]:
    value = {"id": f"c-{n}-{uuid.uuid4().hex[:6]}", "market": market, "user": "feed",
             "owner": "sub:feed", "text": f"chat {n}", "ts": int(time.time() * 1000)}
    return value, {"event-type": "chat.send"}


def test_replica_started_after_records_serves_them_as_history(kafka, gateways, stomp_clients):
    market = _market()
    sent = [trade(market, f"h-{i}-{uuid.uuid4()}") for i in range(25)]
    for rec in sent:
        kafka.produce("trades", market, rec)
    g = gateways("late", kafka.bootstrap)
    g.wait_ready()
    c = stomp_clients(g.port, "history")
    _subscribe(c, f"/topic/market/{market}", {"x-history": "10"})
    c.wait_for(lambda h, b: b.get("market") == market, count=10, timeout=15,
               what="10 replayed trades")
    got = c.find(lambda h, b: b.get("market") == market)
    assert [b["trade_id"] for _, b in got] == [r["trade_id"] for r in sent[-10:]], \
        "the 10 most recent, oldest first"
    assert all(h.get("x-replay") == "true" for h, _ in got)
    live = trade(market, f"live-{uuid.uuid4()}")
    kafka.produce("trades", market, live)
    [(h, _)] = c.wait_for(lambda h, b: b.get("trade_id") == live["trade_id"], timeout=15,
                          what="the live trade after the replay")
    assert "x-replay" not in h


def test_record_produced_when_ready_arrives_on_a_fresh_broker(kafka_factory, gateways):
    k = kafka_factory(1)  # started moments ago: its group coordinator is still loading
    market = _market()
    g = gateways("fresh", k.bootstrap)
    c = StompClient(g.port, "early")
    # The client connects and subscribes before the replica is ready ...
    wait_until(lambda: c.connect(timeout=5) and True, 30, "a STOMP session on the new replica")
    try:
        c.subscribe(f"/topic/market/{market}")
        # ... and the record is produced the instant /readyz says 200.
        wait_until(lambda: g.readyz() == 200, 90, "/readyz 200", interval=0.02)
        rec = trade(market, f"instant-{uuid.uuid4()}")
        k.produce("trades", market, rec)
        c.wait_for(lambda h, b: b.get("trade_id") == rec["trade_id"], timeout=20,
                   what="the record produced when /readyz turned 200")
    finally:
        c.close()


class Follower:
    """A client that keeps the last x-cursor and, when its connection ends, reconnects
    through nginx and resumes after it."""

    def __init__(self, port: int, market: str, name: str):
        self.port, self.market, self.name = port, market, name
        self.dest = f"/topic/market/{market}"
        self.cursor = None
        self.sessions: list[StompClient] = []
        self.recovered: list[str] = []

    def start(self) -> "Follower":
        c = StompClient(self.port, self.name).connect()
        self.sessions.append(c)
        _subscribe(c, self.dest, {})
        return self

    def current(self) -> StompClient:
        return self.sessions[-1]

    def messages(self) -> list[dict]:
        out = []
        for s in self.sessions:
            with s._lock:
                out.extend(h for h, _ in s.received if h.get("destination") == self.dest)
        return out

    def last_cursor(self):
        msgs = self.current().received
        for h, _ in reversed(msgs):
            if h.get("destination") == self.dest and h.get("x-cursor"):
                return h["x-cursor"]
        return self.cursor

    def resume(self, deadline: float) -> None:
        self.cursor = self.last_cursor()
        while True:
            try:
                c = StompClient(self.port, self.name).connect(timeout=5)
                break
            except Exception:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.3)
        self.sessions.append(c)
        receipt = _subscribe(c, self.dest, {"x-resume-after": self.cursor} if self.cursor else {})
        self.recovered.append(receipt.get("x-recovered"))


def test_kill_9_mid_stream_clients_resume_on_the_other_replica_exactly_once(
        kafka, gateways, nginx_factory):
    market = _market()
    a = gateways("a", kafka.bootstrap)
    b = gateways("b", kafka.bootstrap)
    a.wait_ready()
    b.wait_ready()
    nginx = nginx_factory([a.port, b.port])
    followers = [Follower(nginx.port, market, f"f{i}").start() for i in range(6)]
    on_a = a.stats()["connections"]
    assert on_a >= 1 and b.stats()["connections"] >= 1, "clients on both replicas"

    total, rate = 400, 100.0
    produced: list[tuple[str, int, int]] = []  # (topic, partition, offset)
    producer = kafka.producer()
    killed = threading.Event()

    def produce():
        for n in range(total):
            if n % 4 == 3:
                value, headers = _chat(market, n)
                topic = "chat"
            else:
                value, headers = trade(market, f"k-{n}-{uuid.uuid4()}"), None
                topic = "trades"

            def done(err, msg, topic=topic):
                assert err is None, err
                produced.append((topic, msg.partition(), msg.offset()))

            producer.produce(topic, key=market, value=json.dumps(value),
                             headers=list((headers or {}).items()), on_delivery=done)
            producer.poll(0)
            if n == total // 4:
                a.kill()  # SIGKILL: no goodbye, no drain
                killed.set()
            time.sleep(1 / rate)
        producer.flush(30)

    t = threading.Thread(target=produce)
    t.start()
    killed.wait(30)
    deadline = time.monotonic() + 30
    resumed = 0
    # Clients of the dead replica see their connection end and resume through nginx.
    wait_until(lambda: sum(1 for f in followers if not f.current().connected()) >= on_a, 20,
               f"{on_a} clients of the killed replica to notice")
    for f in followers:
        if not f.current().connected():
            f.resume(deadline)
            resumed += 1
    t.join(60)
    assert len(produced) == total
    want = sorted(produced)

    def complete(f):
        ids = {h["message-id"] for h in f.messages()}
        return len(ids) >= total

    for f in followers:
        wait_until(lambda f=f: complete(f), 30, f"{f.name} to hold all {total} records")
    for f in followers:
        ids = [h["message-id"] for h in f.messages()]
        dups = {i for i in ids if ids.count(i) > 1}
        assert not dups, f"{f.name} received duplicates: {sorted(dups)[:5]}"
        got = sorted(tuple([i.rsplit('-', 2)[0], int(i.rsplit('-', 2)[1]),
                            int(i.rsplit('-', 2)[2])]) for i in ids)
        assert got == want, f"{f.name}: missing {set(want) - set(got)}"
        per_partition: dict = {}
        for i in ids:
            topic, part, off = i.rsplit('-', 2)
            per_partition.setdefault((topic, part), []).append(int(off))
        for key, offs in per_partition.items():
            assert offs == sorted(offs), f"{f.name}: {key} out of order"
    assert resumed == on_a
    assert all(r == "true" for f in followers for r in f.recovered), \
        [f.recovered for f in followers]
    for f in followers:
        for s in f.sessions:
            s.close()


def test_resume_from_further_back_than_history_reads_the_log(kafka, gateways, stomp_clients):
    market = _market()
    g = gateways("small", kafka.bootstrap, "--history-size", "5")
    g.wait_ready()
    dest = f"/topic/market/{market}"
    first = stomp_clients(g.port, "before")
    _subscribe(first, dest, {})
    early = [trade(market, f"e-{i}-{uuid.uuid4()}") for i in range(3)]
    for rec in early:
        kafka.produce("trades", market, rec)
    first.wait_for(lambda h, b: b.get("market") == market, count=3, what="3 trades")
    cursor = [h for h, _ in first.received if h.get("destination") == dest][-1]["x-cursor"]
    first.close()
    # Away while 40 more are produced: far more than the 5 kept in memory.
    missed = [trade(market, f"m-{i}-{uuid.uuid4()}") for i in range(40)]
    for rec in missed:
        kafka.produce("trades", market, rec)
    back = stomp_clients(g.port, "after")
    receipt = _subscribe(back, dest, {"x-resume-after": cursor})
    back.wait_for(lambda h, b: b.get("market") == market, count=40, timeout=20,
                  what="the 40 trades missed")
    got = [b["trade_id"] for _, b in back.find(lambda h, b: b.get("market") == market)]
    assert got == [r["trade_id"] for r in missed], "every missed trade, once, in order"
    assert receipt.get("x-recovered") == "true", receipt
    # Resumed again from a later cursor: the read-back consumer kept from the first resume
    # reads only the new range (nothing of its last assignment comes back).
    again_cursor = [h for h, _ in back.received if h.get("destination") == dest][19]["x-cursor"]
    back.close()
    later = [trade(market, f"l-{i}-{uuid.uuid4()}") for i in range(10)]
    for rec in later:
        kafka.produce("trades", market, rec)
    third = stomp_clients(g.port, "again")
    receipt = _subscribe(third, dest, {"x-resume-after": again_cursor})
    third.wait_for(lambda h, b: b.get("market") == market, count=30, timeout=20,
                   what="the 20 trades after the cursor and the 10 produced since")
    got = [b["trade_id"] for _, b in third.find(lambda h, b: b.get("market") == market)]
    want = [r["trade_id"] for r in missed[20:] + later]
    assert got == want, "the second read-back returns its own range, once, in order"
    assert receipt.get("x-recovered") == "true", receipt
