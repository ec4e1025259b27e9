"""stomp-py, unmodified and with default settings, against the embedded default gateway
(in-process bus and demo feed): demo trades, chat with receipts, transactions, client acks."""
from __future__ import annotations

import json
import uuid

import pytest
import stomp

from gateway_support import Gateway, StompClient, wait_until


@pytest.fixture
def gateway(tmp_path):
    g = Gateway("embedded", tmp_path, ["--demo-rate", "50"]).start()
    yield g
    assert g.terminate(15) == 0, "gateway did not exit cleanly on SIGTERM"


def client(gateway, name, login=None) -> StompClient:
    return StompClient(gateway.port, name, login).connect()


def test_receives_demo_trades(gateway):
    c = client(gateway, "trader")
    assert c.connected_headers.get("version") == "1.2"
    c.subscribe("/topic/market/KRW-BTC")
    (headers, trade), = c.wait_for(lambda h, b: b.get("market") == "KRW-BTC", what="a demo trade")[:1]
    assert headers["destination"] == "/topic/market/KRW-BTC"
    assert headers["event-type"] == "trade"
    assert headers["content-type"] == "application/json"
    assert headers["message-id"].startswith("trades-")
    assert float(trade["price"]) > 0 and trade["side"] in ("buy", "sell")
    c.close()


def test_chat_with_receipt_reaches_another_client(gateway):
    reader = client(gateway, "reader", "bob")
    reader.subscribe("/topic/market/KRW-ETH")
    writer = client(gateway, "writer", "alice")
    rid = f"r-{uuid.uuid4()}"
    text = f"hello {uuid.uuid4()}"
    writer.send("/app/market/KRW-ETH/chat", json.dumps({"text": text}),
                headers={"receipt": rid, "content-type": "application/json"})
    writer.wait_receipt(rid)
    (h, msg), = reader.wait_for(lambda h, b: b.get("text") == text, what="the chat message")[:1]
    assert h["event-type"] == "chat.send"
    assert msg["user"] == "alice" and msg["market"] == "KRW-ETH"
    writer.close()
    reader.close()


def test_transaction_commit_and_abort(gateway):
    reader = client(gateway, "reader")
    reader.subscribe("/topic/market/KRW-XRP")
    c = client(gateway, "tx")
    conn = c.conn
    aborted, committed = f"abort-{uuid.uuid4()}", f"commit-{uuid.uuid4()}"
    tx = conn.begin()
    conn.send("/app/market/KRW-XRP/chat", json.dumps({"text": aborted}), transaction=tx)
    conn.abort(tx)
    tx = conn.begin()
    conn.send("/app/market/KRW-XRP/chat", json.dumps({"text": committed}), transaction=tx)
    rid = f"c-{uuid.uuid4()}"
    conn.commit(tx, headers={"receipt": rid})
    c.wait_receipt(rid)
    reader.wait_for(lambda h, b: b.get("text") == committed, what="the committed message")
    # The aborted SEND never arrives, even after the committed one did.
    assert not reader.find(lambda h, b: b.get("text") == aborted)
    c.close()
    reader.close()


def test_client_individual_acks(gateway):
    class Acker(StompClient):
        def on_message(self, frame):
            super().on_message(frame)
            self.conn.ack(frame.headers["ack"])

    c = Acker(gateway.port, "acker").connect()
    c.conn.subscribe("/topic/market/*", id="all", ack="client-individual")
    c.wait_for(lambda h, b: True, count=20, what="20 acknowledged messages")
    # Every MESSAGE carried an ack id and the session is still up: the ACKs were accepted.
    assert all("ack" in h for h, _ in c.received)
    rid = f"k-{uuid.uuid4()}"
    c.conn.send("/app/market/KRW-BTC/chat", json.dumps({"text": "still here"}),
                headers={"receipt": rid})
    c.wait_receipt(rid)
    assert not c.errors
    c.close()


def test_bad_destination_gets_an_error_naming_it(gateway):
    c = client(gateway, "bad")
    c.conn.subscribe("/queue/orders", id="x")
    wait_until(lambda: c.errors, 10, "an ERROR frame")
    headers, body = c.errors[0]
    assert headers["message"] == "unknown destination"
    assert "/queue/orders" in body
