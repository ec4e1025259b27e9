"""The gateway's Kafka bus against real Kafka (and real nginx), as a user sees it.

Run with:  python -m pytest tests/py -m gateway_kafka
The binary is STOMPGATE_BIN (default target/debug/stompgate); see docs/CONTRACT.md.
Clients are stomp-py over WebSocket; records are produced by an ordinary Kafka client.
"""
import json
import threading
import time
import uuid

import pytest

from gateway_support import StompClient, await_flow, trade, wait_until

pytestmark = [pytest.mark.gateway_kafka, pytest.mark.kafka, pytest.mark.timeout(300)]


def _market() -> str:
    """A market id of its own per test, so tests sharing the session's Kafka never mix."""
    return f"KRW-T{uuid.uuid4().hex[:8].upper()}"


def _by_trade_id(tid):
    return lambda h, b: b.get("trade_id") == tid


def _produce_and_expect(kafka, market, clients, label, count=5):
    """Produce `count` trades and wait until every client has received each of them."""
    recs = [trade(market, f"{label}-{i}-{uuid.uuid4()}") for i in range(count)]
    for rec in recs:
        kafka.produce("trades", market, rec)
    for c in clients:
        for rec in recs:
            c.wait_for(_by_trade_id(rec["trade_id"]), timeout=15,
                       what=f"{rec['trade_id']} on {c.name}")


def test_trade_record_reaches_subscribers_on_two_replicas(kafka, gateways, stomp_clients):
    market = _market()
    a = gateways("a", kafka.bootstrap)
    b = gateways("b", kafka.bootstrap)
    a.wait_ready()
    b.wait_ready()
    ca = stomp_clients(a.port, "on-a")
    cb = stomp_clients(b.port, "on-b")
    for c in (ca, cb):
        c.subscribe(f"/topic/market/{market}")
    await_flow(kafka, market, [ca, cb])

    rec = trade(market, f"t-{uuid.uuid4()}", price="95012000", qty="0.0132", side="sell")
    # The record's Kafka timestamp is set to the event time; MESSAGE `timestamp` carries it.
    partition, offset = kafka.produce("trades", market, rec, timestamp=rec["ts"])
    got = {}
    for c in (ca, cb):
        [(h, body)] = c.wait_for(_by_trade_id(rec["trade_id"]), timeout=15,
                                 what=f"trade {rec['trade_id']}")
        assert body == rec, "the trade body is the record's value, unchanged"
        assert h["destination"] == f"/topic/market/{market}"
        assert h["event-type"] == "trade"
        assert h["content-type"].startswith("application/json")
        assert h["timestamp"] == str(rec["ts"])
        assert h.get("subscription") == "sub-0"
        assert h.get("message-id")
        got[c.name] = h["message-id"]
    # message-id names the Kafka origin, so the same record has the same id on every replica
    assert got["on-a"] == got["on-b"], got
    assert str(offset) in got["on-a"], f"message-id {got['on-a']} should name offset {offset}"
    # exactly once per client
    time.sleep(1)
    for c in (ca, cb):
        assert len(c.find(_by_trade_id(rec["trade_id"]))) == 1


def test_chat_send_reaches_other_replica_and_receipt_follows_kafka_ack(
        kafka, gateways, stomp_clients):
    market = "KRW-BTC"
    a = gateways("a", kafka.bootstrap)
    b = gateways("b", kafka.bootstrap)
    a.wait_ready()
    b.wait_ready()
    sender = stomp_clients(a.port, "alice-on-a", login="alice")
    watcher = stomp_clients(b.port, "bob-on-b", login="bob")
    assert sender.connected_headers.get("user-name") == "alice"
    watcher.subscribe(f"/topic/market/{market}")
    sender.subscribe(f"/topic/market/{market}")
    await_flow(kafka, market, [sender, watcher])

    before = kafka.end_offsets("chat")
    text = f"hello {uuid.uuid4()}"
    rid = f"chat-{uuid.uuid4()}"
    sender.send(f"/app/market/{market}/chat", json.dumps({"text": text}),
                headers={"event-type": "chat.send", "receipt": rid,
                         "content-type": "application/json"})
    sender.wait_receipt(rid, timeout=20)
    # The RECEIPT means the broker has the record (acks=all): it is in the topic right now.
    after = kafka.end_offsets("chat")
    assert sum(after.values()) > sum(before.values()), \
        f"RECEIPT arrived but the chat topic did not grow: {before} -> {after}"
    records = kafka.read("chat", start=before, timeout=10,
                         want=lambda rs: any(text in m.value().decode() for m in rs))
    mine = [m for m in records if text in m.value().decode()]
    assert len(mine) == 1, f"chat record not in Kafka after RECEIPT ({len(records)} read)"
    rec = mine[0]
    assert rec.key() == market.encode()
    assert dict(rec.headers() or []).get("event-type") == b"chat.send"
    value = json.loads(rec.value())
    assert value["text"] == text and value["market"] == market and value["user"] == "alice"
    assert value.get("id") and isinstance(value.get("ts"), int)

    # ... and it reaches a client on the other replica, through Kafka
    [(h, body)] = watcher.wait_for(lambda h, b: b.get("text") == text, timeout=15,
                                   what="the chat message on replica b")
    assert h["event-type"] == "chat.send"
    assert h["destination"] == f"/topic/market/{market}"
    assert body == value
    assert not sender.errors and not watcher.errors


def _metric(gateway, name: str) -> float:
    status, body = gateway.get("/metrics")
    assert status == 200, f"/metrics answered {status}"
    for line in body.decode().splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"{name} not in /metrics")


def test_at_light_load_the_consumer_writes_part_of_each_fan_out_itself(
        kafka, gateways, stomp_clients):
    """At light load the Kafka consumer's thread writes its share of a record's copies to
    the sockets itself and leaves the rest to the sessions (src/ingest.rs): every subscriber
    gets every record once, whole and in order, whoever wrote its copy; with
    `--direct-writes false` the sessions write them all."""
    market = _market()
    on = gateways("direct", kafka.bootstrap)
    off = gateways("queued", kafka.bootstrap, "--direct-writes", "false")
    on.wait_ready()
    off.wait_ready()
    clients = {g: [stomp_clients(g.port, f"{g.name}-{i}") for i in range(6)] for g in (on, off)}
    everyone = [c for cs in clients.values() for c in cs]
    for c in everyone:
        c.subscribe(f"/topic/market/{market}")
    await_flow(kafka, market, everyone)
    before = {g: _metric(g, "stompgate_direct_writes_total") for g in (on, off)}

    recs = [trade(market, f"light-{i}-{uuid.uuid4()}") for i in range(40)]
    for rec in recs:
        kafka.produce("trades", market, rec, timestamp=rec["ts"])
        time.sleep(0.05)  # light load: one record at a time
    ids = [r["trade_id"] for r in recs]
    wanted = set(ids)
    for c in everyone:
        c.wait_for(lambda h, b: b.get("trade_id") == ids[-1], timeout=20,
                   what=f"the last record on {c.name}")
        got = c.find(lambda h, b: b.get("trade_id") in wanted)
        assert [b["trade_id"] for _, b in got] == ids, \
            f"{c.name}: every record once, in order"
        assert [b for _, b in got] == recs, f"{c.name}: each body is the record's value"
        assert all(h["destination"] == f"/topic/market/{market}" for h, _ in got)
        assert not c.errors and c.disconnects == 0
    written = {g: _metric(g, "stompgate_direct_writes_total") - before[g] for g in (on, off)}
    print(f"copies written by the consumer's thread: {written[on]:.0f} of {len(recs) * 6}")
    assert written[on] > 0, "at light load the consumer wrote no copy itself"
    assert written[on] < len(recs) * 6, "the sessions on idle workers wrote none of the copies"
    assert written[off] == 0, "--direct-writes false, yet copies were written directly"


def test_group_ids_differ_and_restarted_replica_does_not_replay(
        kafka, gateways, stomp_clients):
    market = _market()
    a = gateways("a", kafka.bootstrap)
    b = gateways("b", kafka.bootstrap)
    a.wait_ready()
    b.wait_ready()
    sa, sb = a.stats(), b.stats()
    assert sa["bus"] == "kafka" and sb["bus"] == "kafka"
    assert sa["group_id"] and sb["group_id"], (sa, sb)
    assert sa["group_id"] != sb["group_id"], "each replica needs its own consumer group"
    assert sa["group_id"].startswith("stompgate") and sb["group_id"].startswith("stompgate")

    ca = stomp_clients(a.port, "on-a")
    ca.subscribe(f"/topic/market/{market}")
    await_flow(kafka, market, [ca])
    old = [trade(market, f"old-{i}-{uuid.uuid4()}") for i in range(3)]
    for rec in old:
        kafka.produce("trades", market, rec)
    for rec in old:
        ca.wait_for(_by_trade_id(rec["trade_id"]), timeout=15)

    assert b.terminate() is not None
    b2 = gateways("b2", kafka.bootstrap)
    b2.wait_ready()
    sb2 = b2.stats()
    assert sb2["group_id"] not in (sa["group_id"], sb["group_id"]), \
        "a restarted replica takes a new group id"
    cb = stomp_clients(b2.port, "on-b2")
    cb.subscribe(f"/topic/market/{market}")
    await_flow(kafka, market, [cb])
    new = trade(market, f"new-{uuid.uuid4()}")
    kafka.produce("trades", market, new)
    cb.wait_for(_by_trade_id(new["trade_id"]), timeout=15)
    replayed = [r["trade_id"] for r in old if cb.find(_by_trade_id(r["trade_id"]))]
    assert not replayed, f"restarted replica replayed old records: {replayed}"


@pytest.mark.nginx
def test_two_replicas_behind_nginx_survive_one_replica_stopping(
        kafka, gateways, nginx_factory):
    market = _market()
    a = gateways("a", kafka.bootstrap)
    b = gateways("b", kafka.bootstrap)
    a.wait_ready()
    b.wait_ready()
    nginx = nginx_factory([a.port, b.port])

    clients = []
    try:
        for i in range(8):
            # heart-beats as browsers use them, so they cross nginx too
            c = StompClient(nginx.port, f"c{i}", heartbeats=(10000, 10000)).connect()
            clients.append(c)
            c.subscribe(f"/topic/market/{market}")
        na, nb = a.stats()["connections"], b.stats()["connections"]
        assert na >= 1 and nb >= 1, f"clients should land on both replicas: a={na} b={nb}"
        assert na + nb == len(clients), (na, nb)

        await_flow(kafka, market, clients)
        _produce_and_expect(kafka, market, clients, "before")

        on_a = na
        a.terminate()
        # the clients of the stopped replica see their connection end ...
        wait_until(lambda: sum(1 for c in clients if c.disconnects) >= on_a, 20,
                   f"{on_a} clients of replica a to be disconnected")
        # ... and reconnect through nginx, which now sends them to b
        deadline = time.monotonic() + 30
        for c in clients:
            if c.connected():
                continue
            while True:
                try:
                    c.connect(timeout=5)
                    break
                except Exception:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.5)
        assert b.stats()["connections"] == len(clients)

        await_flow(kafka, market, clients)
        _produce_and_expect(kafka, market, clients, "after-failover")
    finally:
        for c in clients:
            c.close()


def test_kafka_stop_and_restart_readyz_and_delivery_resume(kafka_factory, gateways,
                                                          stomp_clients):
    k = kafka_factory(brokers=1)
    market = _market()
    g = gateways("a", k.bootstrap, "--send-timeout-ms", "2000")
    g.wait_ready()
    c = stomp_clients(g.port, "client")
    c.subscribe(f"/topic/market/{market}")
    await_flow(k, market, [c])

    k.stop()
    wait_until(lambda: g.readyz() == 503, 60, "/readyz 503 while Kafka is down")
    assert g.alive(), "the gateway must not exit when Kafka goes away"
    assert g.get("/healthz")[0] == 200
    # A SEND the broker cannot acknowledge gets an ERROR carrying its receipt-id, never a RECEIPT.
    sender = stomp_clients(g.port, "sender")
    rid = f"r-{uuid.uuid4()}"
    sender.send(f"/app/market/{market}/chat", json.dumps({"text": "into the void"}),
                headers={"receipt": rid})
    wait_until(lambda: sender.errors, 15, "an ERROR for the unacknowledged SEND")
    headers, body = sender.errors[0]
    assert headers.get("receipt-id") == rid, headers
    assert headers["message"] == "send failed"
    assert rid not in sender.receipts
    time.sleep(1)
    assert g.alive() and g.readyz() == 503

    k.start()  # same folder: same ports, same data
    wait_until(lambda: g.readyz() == 200, 90, "/readyz 200 after Kafka is back")
    await_flow(k, market, [c], timeout=90)
    rec = trade(market, f"resumed-{uuid.uuid4()}")
    k.produce("trades", market, rec)
    c.wait_for(_by_trade_id(rec["trade_id"]), timeout=15)
    assert c.disconnects == 0, "clients stay connected while Kafka is away"
    assert g.alive()


def test_three_brokers_one_stopped_stream_continues(kafka_factory, gateways, stomp_clients):
    k = kafka_factory(brokers=3)
    market = _market()
    g = gateways("a", k.bootstrap)
    g.wait_ready()
    c = stomp_clients(g.port, "client")
    c.subscribe(f"/topic/market/{market}")
    await_flow(k, market, [c])

    leaders = k.partitions("trades")
    partition = 0
    victim = leaders[partition]
    produced: list[str] = []
    errors: list[str] = []
    stop = threading.Event()

    def produce_steadily():
        p = k.producer()
        i = 0
        while not stop.is_set() and i < 400:
            rec = trade(market, f"steady-{i}-{uuid.uuid4().hex[:6]}")

            def done(err, msg, tid=rec["trade_id"]):
                (errors.append(f"{tid}: {err}") if err else produced.append(tid))
            p.produce("trades", key=market, value=json.dumps(rec), partition=partition,
                      on_delivery=done)
            p.poll(0)
            i += 1
            time.sleep(0.1)
        p.flush(60)

    t = threading.Thread(target=produce_steadily, daemon=True)
    t.start()
    time.sleep(3)
    k.stop_broker(victim)  # the leader of the partition being written
    time.sleep(8)
    stop.set()
    t.join(90)
    assert not t.is_alive(), "producer did not finish"
    assert not errors, f"records lost on the producer side: {errors[:3]}"
    assert len(produced) >= 50, f"only {len(produced)} records produced"
    missing = []

    def all_there():
        missing[:] = [tid for tid in produced if not c.find(_by_trade_id(tid))]
        return not missing
    wait_until(all_there, 60, "every record produced across the broker stop to arrive")
    assert g.readyz() == 200, "two of three brokers up: the gateway stays ready"


def test_gateway_started_before_kafka_connects_when_it_comes(kafka_factory, gateways,
                                                             stomp_clients):
    k = kafka_factory(brokers=1)
    market = _market()
    k.stop()
    g = gateways("early", k.bootstrap)
    assert g.get("/healthz")[0] == 200, "the gateway serves while Kafka is down"
    time.sleep(2)
    assert g.readyz() == 503
    c = stomp_clients(g.port, "client")
    c.subscribe(f"/topic/market/{market}")
    k.start()
    wait_until(lambda: g.readyz() == 200, 90, "/readyz 200 once Kafka is up")
    await_flow(k, market, [c], timeout=90)
    assert c.disconnects == 0
