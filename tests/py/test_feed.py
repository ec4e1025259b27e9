"""The exchange feed and the market registry, end to end with local fake exchanges
(tests/py/fake_exchange.py), real Kafka and the real gateway; nothing reaches the internet.

fake exchange --WebSocket--> stompgate feed --Kafka--> stompgate gateway --STOMP--> client
                                  ^                          |
                                  +---- markets topic <------+ POST/DELETE /api/markets
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import urllib.error
import urllib.request
import uuid

import pytest

from fake_exchange import FakeExchange, Feed
from gateway_support import Gateway, await_flow, wait_until

pytestmark = [pytest.mark.gateway_kafka, pytest.mark.kafka, pytest.mark.timeout(300)]

ADMIN = "admin-token-for-tests"
SECRET = "a-jwt-secret-of-enough-length"


def jwt(claims: dict, secret: str = SECRET) -> str:
    enc = lambda b: base64.urlsafe_b64encode(b).rstrip(b"=").decode()  # noqa: E731
    head = enc(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    body = enc(json.dumps({"sub": "ops", "exp": int(time.time()) + 600, **claims}).encode())
    sig = hmac.new(secret.encode(), f"{head}.{body}".encode(), hashlib.sha256).digest()
    return f"{head}.{body}.{enc(sig)}"


def call(port: int, method: str, path: str, body=None, token: str | None = None):
    data = json.dumps(body).encode() if isinstance(body, (dict, list)) else body
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=data, method=method)
    req.add_header("Content-Type", "application/json")
    if token is not None:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=15) as r:
            raw = r.read()
            return r.status, json.loads(raw) if raw else None
    except urllib.error.HTTPError as e:
        raw = e.read()
        try:
            return e.code, json.loads(raw)
        except ValueError:
            return e.code, raw.decode(errors="replace")


def symbol() -> str:
    """A market of its own per test (the trades topic is shared)."""
    return "KRW-T" + uuid.uuid4().hex[:8].upper()


@pytest.fixture
def fakes():
    made = {"upbit": FakeExchange("upbit", binary=True),
            "bithumb": FakeExchange("bithumb", binary=False)}
    yield made
    for f in made.values():
        f.stop()


@pytest.fixture
def feeds(tmp_path):
    made: list[Feed] = []

    def make(*args: str) -> Feed:
        f = Feed(tmp_path, list(args))
        made.append(f)
        return f.start()

    yield make
    for f in made:
        f.stop()
        print(f"--- feed log (tail)\n{f.log(30)}")


def start_stack(kafka, gateways, feeds, fakes, markets_topic: str, *feed_args: str):
    gw = gateways("a", kafka.bootstrap, "--admin-token", ADMIN, "--markets-topic", markets_topic)
    gw.wait_ready()
    feed = feeds("--kafka-brokers", kafka.bootstrap, "--markets-topic", markets_topic,
                 "--upbit-url", fakes["upbit"].url, "--bithumb-url", fakes["bithumb"].url,
                 *feed_args)
    return gw, feed


def bodies(client, market: str) -> list[dict]:
    return [b for _, b in client.find(lambda h, b: b.get("market") == market
                                      and not str(b.get("trade_id", "")).startswith("probe-"))]


@pytest.mark.parametrize("fmt", ["default", "simple"])
def test_trades_exact_to_the_decimal_reach_a_stomp_subscriber(kafka, gateways, feeds, fakes,
                                                              stomp_clients, fmt):
    topic = f"markets-{uuid.uuid4().hex[:8]}"
    gw, feed = start_stack(kafka, gateways, feeds, fakes, topic, "--feed-format", fmt)
    sym = symbol()
    for ex in ("upbit", "bithumb"):
        assert call(gw.port, "POST", "/api/markets", {"exchange": ex, "symbol": sym}, ADMIN)[0] == 201
    fakes["upbit"].wait_subscribed({sym})
    fakes["bithumb"].wait_subscribed({sym})
    assert fakes["upbit"].requests[-1][2] == {"format": fmt.upper()}
    client = stomp_clients(gw.port, "watcher")
    client.subscribe(f"/topic/market/{sym}")
    await_flow(kafka, sym, [client])

    sent = [
        fakes["upbit"].trade(sym, "95012000.0", "0.00012345", "BID"),     # binary frame
        fakes["bithumb"].trade(sym, "95013000", "1.5E-7", "ASK"),          # text frame, exponent
        fakes["upbit"].trade(sym, "0.000000012345678901", "123456789.123456789", "ASK"),
    ]
    sent[1]["qty"] = "0.00000015"
    t0 = time.monotonic()
    client.wait_for(lambda h, b: b.get("market") == sym and not b["trade_id"].startswith("probe-"),
                    count=3, what="the three trades")
    delay_ms = (time.monotonic() - t0) * 1000
    got = bodies(client, sym)
    # The two fake exchanges may hand out the same sequential ids, as real ones may.
    key = lambda b: (b["exchange"], b["trade_id"])  # noqa: E731
    assert sorted(got, key=key) == sorted(sent, key=key)
    headers = [h for h, b in client.find(lambda h, b: b.get("market") == sym
                                         and not b["trade_id"].startswith("probe-"))]
    assert all(h.get("event-type") == "trade" for h in headers)
    assert feed.metric("trades_in_total", "upbit") == 2
    assert feed.metric("trades_in_total", "bithumb") == 1
    assert feed.metric("connected", "upbit") == 1
    wait_until(lambda: feed.metric("trades_produced_total", "upbit") == 2, 10, "produced count")
    print(f"fake exchange -> STOMP subscriber, three trades: {delay_ms:.0f} ms ({fmt})")


def test_no_duplicate_after_a_dropped_connection(kafka, gateways, feeds, fakes, stomp_clients):
    topic = f"markets-{uuid.uuid4().hex[:8]}"
    gw, feed = start_stack(kafka, gateways, feeds, fakes, topic)
    sym = symbol()
    assert call(gw.port, "POST", "/api/markets", {"exchange": "upbit", "symbol": sym}, ADMIN)[0] == 201
    up = fakes["upbit"]
    up.wait_subscribed({sym})
    client = stomp_clients(gw.port, "watcher")
    client.subscribe(f"/topic/market/{sym}")
    await_flow(kafka, sym, [client])
    start = kafka.end_offsets("trades")

    first = up.trade(sym, "95000000", "0.5")
    client.wait_for(lambda h, b: b.get("trade_id") == first["trade_id"], what="the first trade")
    connections = up.connections
    up.drop()
    # The feed reconnects by itself, resubscribes, and the exchange repeats the last trade.
    wait_until(lambda: up.connections > connections and up.subscribed() == {sym}, 15,
               "the feed to reconnect and resubscribe")
    wait_until(lambda: feed.metric("duplicates_dropped_total", "upbit") >= 1, 10,
               "the SNAPSHOT repeat to be dropped")
    second = up.trade(sym, "95001000", "0.25", "ASK")
    client.wait_for(lambda h, b: b.get("trade_id") == second["trade_id"], what="the second trade")
    time.sleep(1.0)  # a duplicate, if any, would have arrived by now
    ids = [b["trade_id"] for b in bodies(client, sym)]
    assert ids == [first["trade_id"], second["trade_id"]], ids
    in_kafka = [json.loads(m.value())["trade_id"] for m in kafka.read("trades", start, timeout=5)
                if m.key() == sym.encode() and not json.loads(m.value())["trade_id"].startswith("probe-")]
    assert in_kafka == ids, in_kafka
    assert feed.metric("reconnects_total", "upbit") >= 1
    assert feed.metric("connected", "upbit") == 1
    # A registry change resubscribes on the open connection; the exchange repeats the last
    # trade of every code again, and again it is dropped.
    dropped = feed.metric("duplicates_dropped_total", "upbit")
    other = symbol()
    assert call(gw.port, "POST", "/api/markets", {"exchange": "upbit", "symbol": other}, ADMIN)[0] == 201
    up.wait_subscribed({sym, other})
    wait_until(lambda: feed.metric("duplicates_dropped_total", "upbit") > dropped, 10,
               "the repeat after the resubscription dropped")
    time.sleep(0.5)
    assert [b["trade_id"] for b in bodies(client, sym)] == ids


def test_wrong_format_is_logged_with_its_reason_and_retried(kafka, gateways, feeds, fakes,
                                                           stomp_clients):
    topic = f"markets-{uuid.uuid4().hex[:8]}"
    up = fakes["upbit"]
    up.reject("WRONG_FORMAT")
    gw, feed = start_stack(kafka, gateways, feeds, fakes, topic)
    sym = symbol()
    assert call(gw.port, "POST", "/api/markets", {"exchange": "upbit", "symbol": sym}, ADMIN)[0] == 201
    wait_until(lambda: feed.metric("errors_total", "upbit", reason="WRONG_FORMAT") >= 2, 20,
               "WRONG_FORMAT counted (and the request retried)")
    assert "WRONG_FORMAT" in feed.log() and "request refused by the test" in feed.log()
    assert feed.proc.poll() is None, "the feed keeps running"
    up.reject(None)
    up.wait_subscribed({sym})
    client = stomp_clients(gw.port, "watcher")
    client.subscribe(f"/topic/market/{sym}")
    await_flow(kafka, sym, [client])
    t = up.trade(sym, "123.45", "6.789")
    client.wait_for(lambda h, b: b.get("trade_id") == t["trade_id"], what="a trade after the refusals")


def test_a_silent_connection_is_replaced(kafka, gateways, feeds, fakes):
    topic = f"markets-{uuid.uuid4().hex[:8]}"
    up = fakes["upbit"]
    gw, feed = start_stack(kafka, gateways, feeds, fakes, topic, "--markets", "upbit:KRW-BTC",
                           "--feed-ping-ms", "200", "--feed-idle-timeout-ms", "1000")
    up.wait_subscribed({"KRW-BTC"})
    time.sleep(1.5)
    assert feed.metric("reconnects_total", "upbit") == 0, "answered PINGs keep it open"
    connections = up.connections
    up.silent = True
    wait_until(lambda: up.connections > connections, 10, "a new connection after the silence")
    assert feed.metric("reconnects_total", "upbit") >= 1
    assert "nothing received for" in feed.log()
    up.silent = False
    up.wait_subscribed({"KRW-BTC"})


def test_registry_round_trip_and_auth_errors(kafka, gateways):
    topic = f"markets-{uuid.uuid4().hex[:8]}"
    a = gateways("a", kafka.bootstrap, "--admin-token", ADMIN, "--markets-topic", topic,
                 "--jwt-secret", SECRET)
    b = gateways("b", kafka.bootstrap, "--markets-topic", topic)
    a.wait_ready()
    assert call(a.port, "GET", "/api/markets") == (200, [])
    m = {"exchange": "upbit", "symbol": "KRW-BTC"}
    status, body = call(a.port, "POST", "/api/markets", m)
    assert status == 401 and "Authorization: Bearer" in body["error"], body
    status, body = call(a.port, "POST", "/api/markets", m, "not-the-token")
    assert status == 403, body
    status, body = call(a.port, "POST", "/api/markets", m, jwt({"admin": False}))
    assert status == 403 and "admin" in body["error"], body
    status, body = call(a.port, "POST", "/api/markets", m, jwt({"admin": True}, "another-secret-xxxxxxx"))
    assert status == 403, body
    assert call(a.port, "POST", "/api/markets", m, jwt({"admin": True})) == (201, m)
    assert call(a.port, "POST", "/api/markets", m, ADMIN) == (200, m)
    status, body = call(a.port, "POST", "/api/markets", {"exchange": "kraken", "symbol": "KRW-BTC"}, ADMIN)
    assert status == 400 and "upbit, bithumb" in body["error"], body
    status, body = call(a.port, "POST", "/api/markets", {"exchange": "upbit", "symbol": "btc"}, ADMIN)
    assert status == 400 and "KRW-BTC" in body["error"], body
    status, body = call(a.port, "POST", "/api/markets", b"not json", ADMIN)
    assert status == 400 and "JSON" in body["error"], body
    assert call(a.port, "POST", "/api/markets", {"exchange": "bithumb", "symbol": "KRW-ETH"}, ADMIN)[0] == 201
    want = [{"exchange": "bithumb", "symbol": "KRW-ETH"}, m]
    assert call(a.port, "GET", "/api/markets") == (200, want)
    # The other replica reads the same compacted topic.
    wait_until(lambda: call(b.port, "GET", "/api/markets") == (200, want), 10, "replica b's list")
    # Replica b has no admin credentials at all: it says how to configure them.
    status, body = call(b.port, "DELETE", "/api/markets/upbit/KRW-BTC", token=ADMIN)
    assert status == 403 and "--admin-token" in body["error"], body
    assert call(a.port, "DELETE", "/api/markets/upbit/KRW-BTC")[0] == 401
    assert call(a.port, "DELETE", "/api/markets/upbit/KRW-BTC", token=ADMIN) == (204, None)
    assert call(a.port, "DELETE", "/api/markets/nyse/KRW-BTC", token=ADMIN)[0] == 400
    assert call(a.port, "GET", "/api/markets") == (200, want[:1])
    wait_until(lambda: call(b.port, "GET", "/api/markets") == (200, want[:1]), 10, "b sees the delete")
    # The topic is compacted, keyed <exchange>:<symbol>, with a tombstone for the delete.
    admin = kafka.admin()
    from confluent_kafka.admin import ConfigResource
    res = ConfigResource("topic", topic)
    cfg = admin.describe_configs([res])[res].result()
    assert cfg["cleanup.policy"].value == "compact"
    recs = [(m.key().decode(), m.value()) for m in kafka.read(topic, want=lambda r: len(r) >= 3, timeout=10)]
    assert recs[-1] == ("upbit:KRW-BTC", None), recs
    assert json.loads(recs[0][1]) == m


def test_registry_survives_a_gateway_restart(kafka, gateways):
    topic = f"markets-{uuid.uuid4().hex[:8]}"
    a = gateways("a", kafka.bootstrap, "--admin-token", ADMIN, "--markets-topic", topic)
    a.wait_ready()
    m = {"exchange": "bithumb", "symbol": "KRW-XRP"}
    assert call(a.port, "POST", "/api/markets", m, ADMIN) == (201, m)
    assert a.terminate() == 0
    again = gateways("again", kafka.bootstrap, "--markets-topic", topic)
    assert call(again.port, "GET", "/api/markets") == (200, [m])


def test_the_feed_follows_registry_changes(kafka, gateways, feeds, fakes):
    topic = f"markets-{uuid.uuid4().hex[:8]}"
    gw, feed = start_stack(kafka, gateways, feeds, fakes, topic, "--markets", "upbit:KRW-BTC",
                           "--feed-ping-ms", "200")
    up, bt = fakes["upbit"], fakes["bithumb"]
    up.wait_subscribed({"KRW-BTC"})
    # Keep-alive: PING every 200 ms here, each answered {"status":"UP"}, none taken for an error.
    wait_until(lambda: up.pings >= 3, 5, "three PINGs")
    assert feed.metric("errors_total", "upbit") == 0
    # --markets registered it in the topic; the gateway reads it from there.
    wait_until(lambda: call(gw.port, "GET", "/api/markets")
               == (200, [{"exchange": "upbit", "symbol": "KRW-BTC"}]), 10, "the gateway's list")
    assert bt.subscribed() is None, "no bithumb market, no bithumb connection"
    connections = up.connections
    assert call(gw.port, "POST", "/api/markets", {"exchange": "upbit", "symbol": "KRW-ETH"}, ADMIN)[0] == 201
    added = up.wait_subscribed({"KRW-BTC", "KRW-ETH"}, timeout=10)
    assert up.connections == connections, "the subscription changes on the open connection"
    assert call(gw.port, "POST", "/api/markets", {"exchange": "bithumb", "symbol": "KRW-ETH"}, ADMIN)[0] == 201
    bt.wait_subscribed({"KRW-ETH"}, timeout=10)
    assert call(gw.port, "DELETE", "/api/markets/upbit/KRW-BTC", token=ADMIN)[0] == 204
    removed = up.wait_subscribed({"KRW-ETH"}, timeout=10)
    assert call(gw.port, "DELETE", "/api/markets/bithumb/KRW-ETH", token=ADMIN)[0] == 204
    wait_until(lambda: bt.subscribed() is None, 10, "bithumb connection closed")
    wait_until(lambda: feed.metric("connected", "bithumb") == 0, 5, "bithumb connected 0")
    assert feed.stop() == 0, "SIGTERM: a clean exit"
    print(f"registry change -> exchange subscription: add {added*1000:.0f} ms, delete {removed*1000:.0f} ms")


def test_one_topic_per_exchange_through_gateway_routes(kafka, gateways, feeds, fakes, stomp_clients):
    from confluent_kafka.admin import NewTopic
    prefix = f"t{uuid.uuid4().hex[:6]}"
    topics = [f"{prefix}-upbit", f"{prefix}-bithumb"]
    admin = kafka.admin()
    for f in admin.create_topics([NewTopic(t, 1, 1) for t in topics]).values():
        f.result(30)
    markets_topic = f"markets-{uuid.uuid4().hex[:8]}"
    gw = gateways("a", kafka.bootstrap, "--admin-token", ADMIN, "--markets-topic", markets_topic,
                  "--extra-trades-topics", ",".join(topics))
    gw.wait_ready()
    feeds("--kafka-brokers", kafka.bootstrap, "--markets-topic", markets_topic,
          "--upbit-url", fakes["upbit"].url, "--bithumb-url", fakes["bithumb"].url,
          "--topic-per-exchange", "--exchange-topic", prefix + "-{exchange}")
    sym = symbol()
    for ex in ("upbit", "bithumb"):
        assert call(gw.port, "POST", "/api/markets", {"exchange": ex, "symbol": sym}, ADMIN)[0] == 201
        fakes[ex].wait_subscribed({sym})
    client = stomp_clients(gw.port, "watcher")
    client.subscribe(f"/topic/market/{sym}")
    await_flow(kafka, sym, [client])
    trades_start = kafka.end_offsets("trades")
    deadline = time.monotonic() + 30
    sent = {}
    # The gateway's consumer picks the new topics up on its next metadata refresh.
    while time.monotonic() < deadline and len({b["exchange"] for b in bodies(client, sym)}) < 2:
        for ex in ("upbit", "bithumb"):
            t = fakes[ex].trade(sym, "3105.5", "10")
            sent[(ex, t["trade_id"])] = t
        time.sleep(1)
    got = bodies(client, sym)
    assert {b["exchange"] for b in got} == {"upbit", "bithumb"}, got
    assert all(sent[(b["exchange"], b["trade_id"])] == b for b in got), got
    for ex, topic in zip(("upbit", "bithumb"), topics):
        recs = [json.loads(m.value()) for m in kafka.read(topic, want=lambda r: len(r) >= 1, timeout=10)]
        assert recs and all(r["exchange"] == ex for r in recs), (topic, recs)
    # Nothing of the feed went to the shared trades topic.
    recs = [m for m in kafka.read("trades", trades_start, timeout=2) if m.key() == sym.encode()]
    assert not recs, recs


def test_live_feed_on_the_embedded_default(tmp_path, fakes, stomp_clients):
    sym = symbol()
    gw = Gateway("live", tmp_path, ["--live-feed", "--upbit-url", fakes["upbit"].url,
                                    "--bithumb-url", fakes["bithumb"].url, "--demo-markets", sym,
                                    "--admin-token", ADMIN, "--feed-backoff-ms", "100"])
    try:
        gw.start()
        both = [{"exchange": "bithumb", "symbol": sym}, {"exchange": "upbit", "symbol": sym}]
        assert call(gw.port, "GET", "/api/markets") == (200, both)
        fakes["upbit"].wait_subscribed({sym})
        fakes["bithumb"].wait_subscribed({sym})
        client = stomp_clients(gw.port, "watcher")
        client.subscribe(f"/topic/market/{sym}")
        t = fakes["upbit"].trade(sym, "95012000.0", "0.00012345")
        client.wait_for(lambda h, b: b.get("trade_id") == t["trade_id"], what="the live trade")
        time.sleep(1.0)
        assert bodies(client, sym) == [t], "only the exchange's trades, no demo feed"
        assert call(gw.port, "POST", "/api/markets", {"exchange": "upbit", "symbol": "KRW-ETH"}, ADMIN)[0] == 201
        fakes["upbit"].wait_subscribed({sym, "KRW-ETH"}, timeout=10)
        assert call(gw.port, "DELETE", f"/api/markets/bithumb/{sym}", token=ADMIN)[0] == 204
        wait_until(lambda: fakes["bithumb"].subscribed() is None, 10, "bithumb dropped")
    finally:
        gw.terminate()
        print(gw.log_tail(20))


def test_bridge_throughput_and_delay(kafka, gateways, feeds, fakes, stomp_clients):
    """Every trade of a burst reaches Kafka exactly once; prints trades/s and the delay."""
    topic = f"markets-{uuid.uuid4().hex[:8]}"
    gw, feed = start_stack(kafka, gateways, feeds, fakes, topic)
    sym = symbol()
    assert call(gw.port, "POST", "/api/markets", {"exchange": "upbit", "symbol": sym}, ADMIN)[0] == 201
    up = fakes["upbit"]
    up.wait_subscribed({sym})
    client = stomp_clients(gw.port, "watcher")
    client.subscribe(f"/topic/market/{sym}")
    await_flow(kafka, sym, [client])
    # Delay, one trade at a time: fake exchange write -> STOMP MESSAGE at the subscriber.
    delays = []
    for _ in range(20):
        t0 = time.monotonic()
        t = up.trade(sym, "95000000", "0.001")
        client.wait_for(lambda h, b, i=t["trade_id"]: b.get("trade_id") == i, what="a trade")
        delays.append((time.monotonic() - t0) * 1000)
        time.sleep(0.05)
    delays.sort()
    # Throughput: one burst, timed until Kafka acknowledged all of it.
    start = kafka.end_offsets("trades")
    n = 20000
    before = feed.metric("trades_produced_total", "upbit")
    t0 = time.monotonic()
    ids = up.burst(sym, n)
    wait_until(lambda: feed.metric("trades_produced_total", "upbit") >= before + n, 120,
               f"{n} trades produced", 0.05)
    seconds = time.monotonic() - t0
    recs = kafka.read("trades", start, want=lambda r: len(r) >= n, timeout=60)
    got = [json.loads(m.value())["trade_id"] for m in recs if m.key() == sym.encode()]
    assert sorted(got) == sorted(ids), f"{len(got)} records for {n} trades"
    print(f"bridge: {n} trades in {seconds:.2f} s = {n / seconds:.0f} trades/s (fake exchange -> "
          f"Kafka ack, debug build); delay fake -> STOMP p50 {delays[10]:.1f} ms, "
          f"max {delays[-1]:.1f} ms over 20 trades")
