"""W3C trace context across the gateway, through real Kafka: a record's `traceparent` header
reaches the STOMP MESSAGE, and a SEND's `traceparent` header reaches the produced record.

Run with:  python -m pytest tests/py/test_traceparent.py
Records are produced and read with confluent-kafka; the client is stomp-py over WebSocket.
"""
import json
import os
import uuid

import pytest

from gateway_support import await_flow, trade

pytestmark = [pytest.mark.gateway_kafka, pytest.mark.kafka, pytest.mark.timeout(300)]


def _traceparent() -> str:
    """A fresh, well-formed W3C traceparent (version 00, sampled)."""
    return f"00-{os.urandom(16).hex()}-{os.urandom(8).hex()}-01"


def test_record_traceparent_reaches_the_message(kafka, gateways, stomp_clients):
    market = f"KRW-TP{uuid.uuid4().hex[:8].upper()}"
    g = gateways("tp-in", kafka.bootstrap)
    g.wait_ready()
    c = stomp_clients(g.port, "watcher")
    c.subscribe(f"/topic/market/{market}")
    await_flow(kafka, market, [c])

    tp = _traceparent()
    rec = trade(market, f"tp-{uuid.uuid4()}")
    kafka.produce("trades", market, rec, headers={"traceparent": tp})
    plain = trade(market, f"plain-{uuid.uuid4()}")
    kafka.produce("trades", market, plain)

    [(h, body)] = c.wait_for(lambda h, b: b.get("trade_id") == rec["trade_id"], timeout=15,
                             what="the traced trade")
    assert body == rec
    assert h.get("traceparent") == tp, f"MESSAGE headers: {h}"
    # A record without one gets none (no made-up or leftover trace context).
    [(h2, _)] = c.wait_for(lambda h, b: b.get("trade_id") == plain["trade_id"], timeout=15,
                           what="the untraced trade")
    assert "traceparent" not in h2, f"MESSAGE headers: {h2}"
    assert not c.errors


def test_send_traceparent_reaches_the_record(kafka, gateways, stomp_clients):
    market = "KRW-BTC"
    g = gateways("tp-out", kafka.bootstrap)
    g.wait_ready()
    sender = stomp_clients(g.port, "alice", login="alice")

    tp = _traceparent()
    text = f"traced {uuid.uuid4()}"
    before = kafka.end_offsets("chat")
    rid = f"r-{uuid.uuid4()}"
    sender.send(f"/app/market/{market}/chat", json.dumps({"text": text}),
                headers={"receipt": rid, "traceparent": tp,
                         "content-type": "application/json"})
    sender.wait_receipt(rid, timeout=20)
    records = kafka.read("chat", start=before, timeout=15,
                         want=lambda rs: any(text in m.value().decode() for m in rs))
    mine = [m for m in records if text in m.value().decode()]
    assert len(mine) == 1, f"chat record not in Kafka after RECEIPT ({len(records)} read)"
    headers = dict(mine[0].headers() or [])
    assert headers.get("traceparent") == tp.encode(), f"record headers: {headers}"
    assert not sender.errors
