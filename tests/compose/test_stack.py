"""The compose stack as an operator runs it: docker-compose.yml, unmodified, already up.

scripts/compose-test.sh installs and starts the engine, builds the images, runs
`docker compose up --build --wait`, then this file. The tests run in file order and share
the stack: the failure checks (a broker stopped, a gateway killed) come after the checks of
the healthy stack, and the last test takes it all down. Every client goes through nginx on
:8080 except where a check needs one replica: gateway-a and gateway-b are published on
127.0.0.1:8091 and :8092, their internal ports (metrics, /api/stats) on :9191 and :9192.
Each failure check prints what it saw. The killed gateway's
clients resume on the other replica with `x-resume-after` (docs/CONTRACT.md, continuity),
checked against a control subscriber for trades lost or duplicated.
"""
import json
import subprocess
import time
import uuid

import pytest

from gateway_support import REPO, StompClient, http_get, wait_until

NGINX, GATEWAY_A, GATEWAY_B = 8080, 8091, 8092
# each replica's --internal-port (9091 in the container)
INTERNAL = {GATEWAY_A: 9191, GATEWAY_B: 9192}
OBSERVABILITY = {"prometheus", "blackbox", "grafana"}
MARKET = "KRW-BTC"
TOPIC = f"/topic/market/{MARKET}"

_clients: list[StompClient] = []


def compose(*args: str, timeout: float = 120) -> str:
    p = subprocess.run(["docker", "compose", *args], cwd=REPO, capture_output=True, text=True,
                       timeout=timeout, stdin=subprocess.DEVNULL)
    assert p.returncode == 0, f"docker compose {' '.join(args)}: exit {p.returncode}\n{p.stderr}"
    return p.stdout


def docker(*args: str, timeout: float = 60) -> str:
    p = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout,
                       stdin=subprocess.DEVNULL)
    assert p.returncode == 0, f"docker {' '.join(args)}: exit {p.returncode}\n{p.stderr}"
    return p.stdout


def client(port: int, name: str, login: str | None = None) -> StompClient:
    c = StompClient(port, name, login)
    _clients.append(c)
    return c.connect(timeout=15)


@pytest.fixture(autouse=True, scope="module")
def _close_clients():
    yield
    for c in _clients:
        c.close()


def trades(c: StompClient, since_ms: int = 0) -> list:
    return c.find(lambda h, b: h.get("event-type") == "trade" and b.get("market") == MARKET
                  and int(b.get("ts", 0)) >= since_ms)


def wait_new_trade(c: StompClient, since_ms: int, timeout: float) -> float:
    """Seconds until `c` has a trade with ts >= since_ms (from now)."""
    t0 = time.monotonic()
    c.wait_for(lambda h, b: h.get("event-type") == "trade" and b.get("market") == MARKET
               and int(b.get("ts", 0)) >= since_ms, timeout=timeout,
               what=f"a {MARKET} trade from the feed after {since_ms}")
    return time.monotonic() - t0


def now_ms() -> int:
    return int(time.time() * 1000)


def max_gap(c: StompClient, since_ms: int) -> float:
    ts = sorted(int(b["ts"]) for _, b in trades(c, since_ms))
    return max((b - a for a, b in zip(ts, ts[1:])), default=0) / 1000


def stats(port: int) -> dict:
    """A replica's /api/stats, read on its internal port."""
    status, body = http_get(INTERNAL[port], "/api/stats")
    assert status == 200, f"/api/stats on :{INTERNAL[port]}: {status}"
    return json.loads(body)


def test_profiles_keep_optional_services_out_of_a_plain_up():
    plain = set(compose("config", "--services").split())
    assert "kafka-ui" not in plain and not OBSERVABILITY & plain, plain
    full = set(compose("--profile", "observability", "--profile", "ui", "config", "--services").split())
    assert OBSERVABILITY | {"kafka-ui"} <= full, full
    running = set(compose("ps", "--services").split())
    assert not OBSERVABILITY & running and "kafka-ui" not in running, running


def test_operator_endpoints_only_on_the_internal_port():
    for port in (NGINX, GATEWAY_A, GATEWAY_B):
        for path in ("/metrics", "/api/stats"):
            status, _ = http_get(port, path)
            assert status == 404, f"public {path} on :{port}: {status}, expected 404"
    for port in INTERNAL.values():
        status, body = http_get(port, "/metrics")
        assert status == 200 and b"stompgate_" in body, f"/metrics on :{port}: {status}"


def test_dashboard_and_readyz_through_nginx():
    status, body = http_get(NGINX, "/")
    assert status == 200, f"GET / through nginx: {status}"
    assert b"<title>stompgate" in body, body[:300]
    status, body = http_get(NGINX, "/readyz")
    assert status == 200, f"GET /readyz through nginx: {status} {body!r}"
    for port in (GATEWAY_A, GATEWAY_B):
        assert http_get(port, "/healthz")[0] == 200
        assert http_get(port, "/readyz")[0] == 200
        assert stats(port)["bus"] == "kafka"
    # the gateway image's own health check (liveness on /healthz) has passed
    for svc in ("gateway-a", "gateway-b", "nginx"):
        cid = compose("ps", "-q", svc).strip()
        assert docker("inspect", "-f", "{{.State.Health.Status}}", cid).strip() == "healthy", svc


def test_topics_replicated_on_three_brokers_with_min_isr_2():
    out = compose("exec", "-T", "kafka-1", "/opt/kafka/bin/kafka-topics.sh",
                  "--bootstrap-server", "kafka-1:9092", "--describe",
                  "--topic", "trades,chat,markets", timeout=60)
    heads = [line for line in out.splitlines() if line.startswith("Topic:") and "PartitionCount" in line]
    assert {h.split()[1] for h in heads} == {"trades", "chat", "markets"}, out
    for h in heads:
        assert "ReplicationFactor: 3" in h and "min.insync.replicas=2" in h, h


def test_trade_from_the_feed_reaches_a_subscriber_through_nginx():
    c = client(NGINX, "dashboard")
    c.subscribe(TOPIC)
    since = now_ms()
    took = wait_new_trade(c, since, timeout=30)
    [(h, body)] = trades(c, since)[:1]
    assert h["destination"] == TOPIC and h.get("message-id")
    assert set(body) == {"market", "exchange", "price", "qty", "side", "ts", "trade_id"}
    print(f"\n  feed trade through nginx after {took:.2f}s")


def test_chat_sent_on_one_replica_reaches_the_other():
    sender = client(GATEWAY_A, "alice-on-a", login="alice")
    watcher = client(GATEWAY_B, "bob-on-b", login="bob")
    watcher.subscribe(TOPIC)
    text = f"hello from a {uuid.uuid4()}"
    rid = f"chat-{uuid.uuid4()}"
    sender.send(f"/app/market/{MARKET}/chat", json.dumps({"text": text}),
                headers={"event-type": "chat.send", "receipt": rid,
                         "content-type": "application/json"})
    sender.wait_receipt(rid, timeout=20)
    [(h, body)] = watcher.wait_for(lambda h, b: b.get("text") == text, timeout=20,
                                   what="the chat on gateway-b")
    assert h["event-type"] == "chat.send" and body["user"] == "alice"
    assert not sender.errors and not watcher.errors


@pytest.mark.timeout(150)
def test_stream_goes_on_when_kafka_2_stops():
    c = client(NGINX, "through-broker-stop")
    c.subscribe(TOPIC)
    wait_new_trade(c, now_ms(), timeout=30)
    before_ms, t0 = now_ms(), time.monotonic()
    compose("stop", "kafka-2", timeout=90)
    stopped_ms, stop_s = now_ms(), time.monotonic() - t0
    took = wait_new_trade(c, stopped_ms, timeout=60)
    # ... and keeps going: trades for a few more seconds, and a SEND is still acknowledged
    # by the two brokers left (min.insync.replicas=2).
    time.sleep(5)
    n = len(trades(c, stopped_ms))
    rid = f"r-{uuid.uuid4()}"
    c.send(f"/app/market/{MARKET}/chat", json.dumps({"text": "two brokers left"}),
           headers={"event-type": "chat.send", "receipt": rid, "content-type": "application/json"})
    c.wait_receipt(rid, timeout=30)
    assert http_get(NGINX, "/readyz")[0] == 200
    assert c.connected() and not c.errors, c.errors
    print(f"\n  kafka-2 stopped in {stop_s:.1f}s; first trade after the stop {took:.2f}s later; "
          f"{n} trades in the next ~5s; largest gap between {MARKET} trades from the stop "
          f"command on {max_gap(c, before_ms):.2f}s (the feed sends one each 0.2s); chat SEND "
          f"acknowledged with 2 of 3 brokers")
    assert n >= 5, f"only {n} trades in the 5s after kafka-2 stopped"


def subscribe_with(c: StompClient, headers: dict) -> dict:
    """SUBSCRIBE to TOPIC with extra headers; returns the RECEIPT's headers."""
    rid = f"r-{uuid.uuid4()}"
    got = {}

    def on_receipt(frame, orig=c.on_receipt):
        if frame.headers.get("receipt-id") == rid:
            got.update(frame.headers)
        orig(frame)

    c.on_receipt = on_receipt
    c.conn.subscribe(TOPIC, id=f"s-{uuid.uuid4().hex[:6]}", headers={"receipt": rid, **headers})
    c.wait_receipt(rid, timeout=20)
    return got


def trade_ids(sessions: list[StompClient]) -> list[str]:
    return [b["trade_id"] for s in sessions for _, b in trades(s)]


def last_cursor(c: StompClient) -> str | None:
    with c._lock:
        for h, _ in reversed(c.received):
            if h.get("destination") == TOPIC and h.get("x-cursor"):
                return h["x-cursor"]
    return None


@pytest.mark.timeout(150)
def test_clients_of_a_killed_gateway_resume_through_nginx_without_a_gap():
    # A control subscriber on gateway-b sees the whole stream.
    control = client(GATEWAY_B, "control-on-b")
    subscribe_with(control, {})
    # connections the earlier tests left open are not these clients'
    a0, b0 = stats(GATEWAY_A)["connections"], stats(GATEWAY_B)["connections"]
    cs = [client(NGINX, f"lb-{i}") for i in range(6)]
    for c in cs:
        subscribe_with(c, {})
    on_a = stats(GATEWAY_A)["connections"] - a0
    on_b = stats(GATEWAY_B)["connections"] - b0
    assert on_a >= 1, f"nginx put none of 6 clients on gateway-a (b has {on_b})"
    since = now_ms()
    for c in cs:
        wait_new_trade(c, since, timeout=30)
    t0 = time.monotonic()
    compose("kill", "gateway-a", timeout=60)
    wait_until(lambda: sum(1 for c in cs if c.disconnects) > 0, 20, "a client to see its "
               "connection drop")
    time.sleep(1)
    sessions = {c.name: [c] for c in cs}
    dropped = [c for c in cs if c.disconnects]
    killed_ms = now_ms()
    worst, recovered = 0.0, []
    # Each dropped client reconnects through nginx and resumes after its last x-cursor.
    for old in dropped:
        cursor = last_cursor(old)
        assert cursor, f"{old.name}: no x-cursor on its messages"
        old.close()
        t1 = time.monotonic()
        new = StompClient(NGINX, old.name)
        _clients.append(new)
        wait_until(lambda: new.connect(timeout=10), 30, f"{old.name} to reconnect through nginx",
                   interval=0.5)
        receipt = subscribe_with(new, {"x-resume-after": cursor})
        worst = max(worst, time.monotonic() - t1)
        recovered.append(receipt.get("x-recovered"))
        sessions[old.name].append(new)
    for ss in sessions.values():
        wait_new_trade(ss[-1], killed_ms, timeout=30)
    time.sleep(1)
    # Every trade the control saw between a client's first and last trade reached that
    # client, once: nothing lost across the kill and the reconnect, nothing twice.
    order = trade_ids([control])
    pos = {t: i for i, t in enumerate(order)}
    gaps = dups = 0
    for name, ss in sessions.items():
        got = trade_ids(ss)
        dups += len(got) - len(set(got))
        seen = [pos[t] for t in got if t in pos]
        assert seen, f"{name}: none of its trades is in the control's stream"
        missing = set(order[min(seen):max(seen) + 1]) - set(got)
        gaps += len(missing)
        assert not missing, f"{name}: {len(missing)} trades lost across the kill"
    state = docker("inspect", "-f", "{{.State.Status}}", compose("ps", "-aq", "gateway-a").strip())
    print(f"\n  nginx put {on_a} of the {len(cs)} clients on gateway-a, {on_b} on gateway-b; kill: "
          f"{len(dropped)} dropped, reconnected through nginx and resumed with x-resume-after "
          f"(slowest {worst:.2f}s, x-recovered {recovered}); all {len(cs)} receive trades again "
          f"{time.monotonic() - t0:.1f}s after the kill; against a control on gateway-b: "
          f"{gaps} trades missing, {dups} duplicated; gateway-a is {state.strip()}")
    assert len(dropped) == on_a, f"{on_a} of these clients were on gateway-a but {len(dropped)} dropped"
    assert recovered == ["true"] * len(dropped), recovered
    assert dups == 0, f"{dups} trades arrived twice"
    assert http_get(NGINX, "/readyz")[0] == 200


@pytest.mark.timeout(120)
def test_down_v_leaves_nothing_running():
    project = json.loads(compose("config", "--format", "json"))["name"]
    for c in _clients:
        c.close()
    t0 = time.monotonic()
    compose("down", "-v", "--timeout", "20", timeout=110)
    took = time.monotonic() - t0
    assert docker("ps", "-aq").split() == [], docker("ps", "-a")
    label = f"label=com.docker.compose.project={project}"
    assert docker("volume", "ls", "-q", "--filter", label).split() == []
    assert docker("network", "ls", "-q", "--filter", label).split() == []
    print(f"\n  down -v in {took:.1f}s: no containers, no volumes, no network left")
