"""Routes as configuration, end to end with real Kafka and the real gateway: the `[routes]`
table of the --config file adds inbound routes (topic -> destination template) and SEND
routes (destination pattern -> topic, key template), checked at startup.

  topic-upbit / topic-bithumb --[[routes.inbound]]--> /topic/market/<id> --> subscriber
  SEND /app/order/<market> --[[routes.send]]--> topic orders (key <market>) --> RECEIPT
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import json
import subprocess
import time
import uuid

import pytest

from gateway_support import Gateway, StompClient, gateway_bin, stop_all, trade

SECRET = "a-jwt-secret-of-enough-length-for-routes"

ROUTES = """
[[routes.inbound]]
topic = "topic-upbit"
destination = "/topic/market/{key}"
event-type = "trade"
conflatable = true

[[routes.inbound]]
topic = "topic-bithumb"
destination = "/topic/market/{key}"
event-type = "trade"
conflatable = true

[[routes.inbound]]
topic = "BOOK"
destination = "/topic/book/{json.exchange}/{key}"
event-type = "book"

[[routes.send]]
destination = "/app/order/{market}"
topic = "ORDERS"
key = "{market}"
event-types = ["order.new", "order.cancel"]
allow = "any"

[[routes.send]]
destination = "/app/desk/{market}/{side}"
topic = "ORDERS"
key = "{market}:{side}"
event-types = ["order.new"]
allow = "authenticated"
"""


def jwt(claims: dict, secret: str = SECRET) -> str:
    enc = lambda b: base64.urlsafe_b64encode(b).rstrip(b"=").decode()  # noqa: E731
    head = enc(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    body = enc(json.dumps({"sub": "trader", "exp": int(time.time()) + 600, **claims}).encode())
    sig = hmac.new(secret.encode(), f"{head}.{body}".encode(), hashlib.sha256).digest()
    return f"{head}.{body}.{enc(sig)}"


class TokenClient(StompClient):
    """A StompClient that connects with a JWT as its passcode."""

    def __init__(self, port: int, name: str, token: str):
        super().__init__(port, name)
        self.token = token

    def connect(self, timeout: float = 10.0) -> "TokenClient":
        import stomp
        conn = stomp.WSStompConnection(
            [("127.0.0.1", self.port)], ws_path="/ws",
            header={"Sec-WebSocket-Protocol": "v12.stomp"}, heartbeats=(0, 0), timeout=timeout,
            reconnect_attempts_max=1, prefer_localhost=False, try_loopback_connect=False)
        conn.set_listener(self.name, self)
        self.conn = conn
        conn.connect(passcode=self.token, wait=False)
        self._wait(lambda: self.connected_headers, timeout, "CONNECTED")
        conn.transport.socket.settimeout(None)
        return self


def ensure_topics(kafka, *topics: str) -> None:
    """Creates the topics (the test brokers do not create topics on first use)."""
    from confluent_kafka.admin import NewTopic
    admin = kafka.admin()  # held: the futures die with their client
    existing = set(admin.list_topics(timeout=20).topics)
    todo = [NewTopic(t, 1, 1) for t in topics if t not in existing]
    if todo:
        for f in admin.create_topics(todo).values():
            try:
                f.result(30)
            except Exception as e:  # created meanwhile by another run on the same cluster
                if "TOPIC_ALREADY_EXISTS" not in str(e):
                    raise


def start_gateway(tmp_path, kafka, text: str, *extra: str) -> Gateway:
    cfg = tmp_path / f"routes-{uuid.uuid4().hex[:6]}.toml"
    cfg.write_text(text)
    g = Gateway("routes", tmp_path, ["--kafka-brokers", kafka.bootstrap, "--config", str(cfg),
                                     "--markets-topic", f"markets-{uuid.uuid4().hex[:8]}", *extra])
    g.start()
    g.wait_ready()
    return g


@pytest.fixture
def run_gateway(tmp_path, kafka):
    made: list[Gateway] = []

    def make(text: str, *extra: str) -> Gateway:
        made.append(start_gateway(tmp_path, kafka, text, *extra))
        return made[-1]

    yield make
    stop_all(made)


@pytest.fixture
def clients():
    made: list[StompClient] = []

    def make(c: StompClient) -> StompClient:
        made.append(c)
        return c.connect()

    yield make
    for c in made:
        c.close()


def flow(kafka, topic: str, key: str, value_of, client: StompClient, timeout: float = 45.0):
    """Produces probes to `topic` until `client` has one (the gateway's consumer starts at
    the end of each partition once assigned); returns the probe ids sent."""
    probes: set[str] = set()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pid = f"probe-{uuid.uuid4()}"
        probes.add(pid)
        kafka.produce(topic, key, value_of(pid))
        end = min(deadline, time.monotonic() + 1.5)
        while time.monotonic() < end:
            if client.find(lambda h, b: b.get("trade_id") in probes):
                return probes
            time.sleep(0.1)
    raise AssertionError(f"nothing of {topic} reached {client.name} within {timeout}s")


def names(suffix: str) -> tuple[str, str]:
    return f"BOOK-{suffix}", f"ORDERS-{suffix}"


def config_for(suffix: str) -> str:
    book, orders = names(suffix)
    return ROUTES.replace('"BOOK"', f'"{book}"').replace('"ORDERS"', f'"{orders}"')


@pytest.mark.kafka
@pytest.mark.gateway_kafka
@pytest.mark.timeout(240)
def test_per_exchange_topics_reach_market_subscribers(kafka, run_gateway, clients):
    suffix = uuid.uuid4().hex[:8]
    book, orders = names(suffix)
    ensure_topics(kafka, "topic-upbit", "topic-bithumb", book, orders)
    gw = run_gateway(config_for(suffix), "--jwt-secret", SECRET,
                     "--anonymous-subscribe", "/topic/market/*,/topic/book/upbit/*")
    sym = "KRW-R" + suffix.upper()
    watcher = clients(StompClient(gw.port, "watcher"))
    watcher.subscribe(f"/topic/market/{sym}")
    everything = clients(StompClient(gw.port, "all-books"))
    everything.subscribe("/topic/book/upbit/*")

    def of(exchange):
        return lambda pid: {**trade(sym, pid), "exchange": exchange}

    flow(kafka, "topic-upbit", sym, of("upbit"), watcher)
    flow(kafka, "topic-bithumb", sym, of("bithumb"), watcher)
    got = watcher.find(lambda h, b: b["market"] == sym)
    assert {b["exchange"] for _, b in got} == {"upbit", "bithumb"}, got
    for h, _ in got:
        assert h["destination"] == f"/topic/market/{sym}"
        assert h["event-type"] == "trade"
        assert h["message-id"].startswith(("topic-upbit-", "topic-bithumb-")), h
    # The default trades topic still routes as before.
    flow(kafka, "trades", sym, of("upbit"), watcher)

    # A {json.<field>} route: its destinations may be subscribed to, one or all at once.
    one = clients(StompClient(gw.port, "one-book"))
    one.subscribe(f"/topic/book/upbit/{sym}")
    flow(kafka, book, sym, of("upbit"), one)
    h, b = one.find(lambda h, b: True)[0]
    assert h["destination"] == f"/topic/book/upbit/{sym}" and h["event-type"] == "book", h
    # The wildcard subscriber is another session: its copy may land a moment after `one`'s.
    everything._wait(lambda: everything.find(
        lambda h, b: h["destination"] == f"/topic/book/upbit/{sym}"), 10, "the book record")

    # A destination no route publishes to is refused, with the ones that exist.
    lost = clients(StompClient(gw.port, "lost"))
    lost.conn.subscribe("/topic/orders/x", id="s1")
    lost._wait(lambda: lost.errors, 10, "an ERROR")
    h, body = lost.errors[0]
    assert h["message"] == "unknown destination", h
    assert "/topic/market/<id> or /topic/market/*" in body, body
    assert "/topic/book/<id>/<id> or /topic/book/<id>/*" in body, body

    # A routed destination is still subject to permissions.
    other = clients(StompClient(gw.port, "other"))
    other.conn.subscribe(f"/topic/book/bithumb/{sym}", id="s1")
    other._wait(lambda: other.errors, 10, "an ERROR")
    assert other.errors[0][0]["message"] == "forbidden", other.errors


@pytest.mark.kafka
@pytest.mark.gateway_kafka
@pytest.mark.timeout(240)
def test_send_route_produces_to_its_topic_with_the_templated_key(kafka, run_gateway, clients):
    suffix = uuid.uuid4().hex[:8]
    book, orders = names(suffix)
    ensure_topics(kafka, "topic-upbit", "topic-bithumb", book, orders)
    gw = run_gateway(config_for(suffix), "--jwt-secret", SECRET)
    sym = "KRW-O" + suffix.upper()
    start = kafka.end_offsets(orders)

    # allow = "any": an anonymous client (no token) may send here, and nowhere else.
    anon = clients(StompClient(gw.port, "anon"))
    order = json.dumps({"side": "buy", "price": "95012000", "qty": "0.0132"})
    anon.send(f"/app/order/{sym}", order, {"receipt": "r-1", "content-type": "application/json"})
    anon.wait_receipt("r-1", 15)
    anon.send(f"/app/order/{sym}", "{}", {"receipt": "r-2", "event-type": "order.cancel"})
    anon.wait_receipt("r-2", 15)

    recs = kafka.read(orders, start, want=lambda r: len(r) >= 2, timeout=20)
    assert [m.key() for m in recs] == [sym.encode()] * 2, recs
    assert recs[0].value() == order.encode()
    h0, h1 = (dict((k, v.decode()) for k, v in m.headers()) for m in recs)
    assert h0["event-type"] == "order.new" and h1["event-type"] == "order.cancel", (h0, h1)
    assert h0["user"].startswith("anonymous-"), h0

    # An event type the route does not list is refused with the ones it does.
    anon.send(f"/app/order/{sym}", "{}", {"receipt": "r-3", "event-type": "order.steal"})
    anon._wait(lambda: anon.errors, 10, "an ERROR")
    h, body = anon.errors[0]
    assert h["message"] == "send refused" and h.get("receipt-id") == "r-3", h
    assert "event type 'order.steal' is not accepted" in body and "order.new, order.cancel" in body

    # allow = "authenticated": refused without a token, produced with one.
    anon2 = clients(StompClient(gw.port, "anon2"))
    anon2.send(f"/app/desk/{sym}/buy", "{}", {"receipt": "r-4"})
    anon2._wait(lambda: anon2.errors, 10, "an ERROR")
    h, body = anon2.errors[0]
    assert h["message"] == "forbidden" and "Connect with a token" in body, (h, body)
    trader = clients(TokenClient(gw.port, "trader", jwt({})))
    trader.send(f"/app/desk/{sym}/buy", '{"qty":"1"}', {"receipt": "r-5"})
    trader.wait_receipt("r-5", 15)
    recs = kafka.read(orders, start, want=lambda r: len(r) >= 3, timeout=20)
    assert recs[-1].key() == f"{sym}:buy".encode(), recs[-1].key()
    assert dict(recs[-1].headers())["user"] == b"trader"

    # A SEND to no route says where SENDs may go, configured routes included.
    lost = clients(TokenClient(gw.port, "lost", jwt({"send": ["/app/**"]})))
    lost.send("/app/nowhere/x", "{}", {"receipt": "r-7"})
    lost._wait(lambda: lost.errors, 10, "an ERROR")
    h, body = lost.errors[0]
    assert h["message"] == "unknown destination", h
    assert "/app/market/<market-id>/chat" in body and "/app/order/{market}" in body, body

    # Chat SENDs keep today's path (--default-send permits them to a token holder).
    trader.send(f"/app/market/{sym}/chat", '{"text":"hi"}', {"receipt": "r-6"})
    trader.wait_receipt("r-6", 15)
    assert not trader.errors, trader.errors


@pytest.mark.timeout(60)
@pytest.mark.parametrize("table,message", [
    ('[[routes.inbound]]\ntopic = "topic-upbit"\ndestination = "/topic/market/{market}"\n',
     "inbound route of topic 'topic-upbit': destination '/topic/market/{market}' unknown placeholder '{market}'"),
    ('[[routes.send]]\ndestination = "/app/order/{market}"\ntopic = "orders"\nkey = "{symbol}"\n'
     'event-types = ["order.new"]\n',
     "SEND route '/app/order/{market}': key '{symbol}' unknown placeholder '{symbol}'"),
    ('[[routes.inbound]]\ntopic = "t"\ndestination = "/topic/market/{key"\n',
     "has '{' without a closing '}'"),
])
def test_bad_template_fails_startup_with_the_route_and_placeholder(tmp_path, table, message):
    cfg = tmp_path / "bad.toml"
    cfg.write_text(table)
    p = subprocess.run([str(gateway_bin()), "--port", "0", "--bind", "127.0.0.1",
                        "--config", str(cfg)], capture_output=True, text=True, timeout=30,
                       stdin=subprocess.DEVNULL)
    out = p.stdout + p.stderr
    assert p.returncode != 0, out
    assert message in out, out
    assert "stompgate listening on" not in out, out
