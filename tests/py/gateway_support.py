"""Helpers for tests that run the stompgate binary: the process, STOMP clients, nginx.

The gateway is started as docs/CONTRACT.md says: `--port 0`, and the test reads the line
`stompgate listening on http://127.0.0.1:<port>` from its stdout. Every wait is bounded.
"""
from __future__ import annotations

import json
import os
import queue
import re
import shutil
import signal
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
LISTEN_RE = re.compile(r"stompgate listening on http://127\.0\.0\.1:(\d+)")
NGINX_TEMPLATE = REPO / "deploy" / "nginx" / "nginx.conf.template"


def gateway_bin() -> Path:
    p = Path(os.environ.get("STOMPGATE_BIN", REPO / "target" / "debug" / "stompgate"))
    if not p.is_absolute():
        p = REPO / p
    if not p.exists():
        pytest.fail(f"gateway binary not found at {p}: build it (cargo build) or set STOMPGATE_BIN")
    return p


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(pred, timeout: float, what: str, interval: float = 0.2):
    """Poll pred() until it returns a true value (returned) or fail after timeout seconds."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            last = pred()
        except Exception as e:  # a poll that errors counts as "not yet"
            last = e
        if last and not isinstance(last, Exception):
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what} (last: {last!r})")


def http_get(port: int, path: str, timeout: float = 3.0) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


# ------------------------------------------------------------------------------------ gateway

class Gateway:
    """One stompgate replica, run as a child process."""

    def __init__(self, name: str, log_dir: Path, args: list[str], env: dict | None = None):
        self.name = name
        self.log_path = Path(log_dir) / f"gateway-{name}.log"
        self.args = args
        self.env = env or {}
        self.proc: subprocess.Popen | None = None
        self.port: int | None = None

    def start(self, timeout: float = 30.0) -> "Gateway":
        cmd = [str(gateway_bin()), "--port", "0", "--bind", "127.0.0.1", *self.args]
        env = {**os.environ, "RUST_LOG": os.environ.get("RUST_LOG", "info"), **self.env}
        self.port = None
        found = threading.Event()
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, env=env, text=True, bufsize=1,
                                     errors="replace", start_new_session=True)
        logf = open(self.log_path, "a")
        logf.write(f"=== {' '.join(cmd)}\n")

        def pump(proc=self.proc):
            for line in proc.stdout:
                logf.write(line)
                logf.flush()
                m = LISTEN_RE.search(line)
                if m and not found.is_set():
                    self.port = int(m.group(1))
                    found.set()
            logf.close()

        threading.Thread(target=pump, daemon=True, name=f"gw-{self.name}-out").start()
        deadline = time.monotonic() + timeout
        while not found.wait(0.1):
            if self.proc.poll() is not None:
                raise AssertionError(f"gateway {self.name} exited ({self.proc.returncode}) before "
                                     f"listening:\n{self.log_tail()}")
            if time.monotonic() > deadline:
                self.kill()
                raise AssertionError(f"gateway {self.name} printed no 'stompgate listening on' "
                                     f"line within {timeout}s:\n{self.log_tail()}")
        return self

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def get(self, path: str) -> tuple[int, bytes]:
        return http_get(self.port, path)

    def stats(self) -> dict:
        status, body = self.get("/api/stats")
        assert status == 200, f"GET /api/stats on {self.name}: {status} {body[:200]!r}"
        return json.loads(body)

    def readyz(self) -> int:
        try:
            return self.get("/readyz")[0]
        except OSError:
            return 0

    def wait_ready(self, timeout: float = 60.0) -> None:
        wait_until(lambda: self.readyz() == 200, timeout, f"{self.name} /readyz 200")

    def terminate(self, timeout: float = 20.0) -> int | None:
        """SIGTERM, wait for the exit (then SIGKILL); returns the exit code."""
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else None
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(f"gateway {self.name} did not exit within {timeout}s of SIGTERM")

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def log_tail(self, lines: int = 40) -> str:
        try:
            text = self.log_path.read_text(errors="replace").splitlines()[-lines:]
        except OSError:
            return "(no log)"
        return f"--- {self.log_path} (tail)\n" + "\n".join(text)


@pytest.fixture
def gateways(tmp_path):
    """Factory: gateways(name, kafka_bootstrap, *extra_args) -> a started Gateway.

    Every gateway is stopped when the test ends; their log tails are printed on failure.
    """
    made: list[Gateway] = []

    def make(name: str, brokers: str, *extra: str) -> Gateway:
        g = Gateway(name, tmp_path, ["--kafka-brokers", brokers, *extra])
        made.append(g)
        return g.start()

    yield make
    stop_all(made)


def stop_all(made: list[Gateway]) -> None:
    """Stops every gateway a test started (gracefully, else killed) and prints its log tail."""
    for g in made:
        try:
            g.terminate(10)
        except AssertionError:
            pass
        finally:
            g.kill()
        print(g.log_tail(25))


# ------------------------------------------------------------------------------------ STOMP

class StompClient:
    """A stomp-py client over WebSocket (stomp.WSStompConnection), recording what it gets."""

    def __init__(self, port: int, name: str = "client", login: str | None = None,
                 heartbeats: tuple[int, int] = (0, 0)):
        self.port, self.name, self.login, self.heartbeats = port, name, login, heartbeats
        self.messages: "queue.Queue" = queue.Queue()
        self.received: list[tuple[dict, str]] = []  # (headers, body) of every MESSAGE
        self.receipts: set[str] = set()
        self.errors: list[tuple[dict, str]] = []
        self.connected_headers: dict = {}
        self.disconnects = 0
        self._lock = threading.Condition()
        self._subs: list[tuple[str, str]] = []
        self.conn = None

    # stomp-py listener interface
    def on_connected(self, frame):
        with self._lock:
            self.connected_headers = dict(frame.headers)
            self._lock.notify_all()

    def on_message(self, frame):
        with self._lock:
            self.received.append((dict(frame.headers), frame.body))
            self._lock.notify_all()

    def on_receipt(self, frame):
        with self._lock:
            self.receipts.add(frame.headers.get("receipt-id"))
            self._lock.notify_all()

    def on_error(self, frame):
        with self._lock:
            self.errors.append((dict(frame.headers), frame.body))
            self._lock.notify_all()

    def on_disconnected(self):
        with self._lock:
            self.disconnects += 1
            self.connected_headers = {}
            self._lock.notify_all()

    def on_heartbeat_timeout(self):
        pass

    def _wait(self, pred, timeout: float, what: str):
        deadline = time.monotonic() + timeout
        with self._lock:
            while True:
                r = pred()
                if r:
                    return r
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"{self.name}: timed out after {timeout}s waiting for "
                                         f"{what}; errors={self.errors[-3:]}")
                self._lock.wait(min(left, 0.5))

    def connect(self, timeout: float = 10.0) -> "StompClient":
        import stomp
        conn = stomp.WSStompConnection(
            [("127.0.0.1", self.port)], ws_path="/ws",
            header={"Sec-WebSocket-Protocol": "v12.stomp"},
            heartbeats=self.heartbeats, timeout=timeout,
            reconnect_attempts_max=1, prefer_localhost=False, try_loopback_connect=False)
        conn.set_listener(self.name, self)
        with self._lock:
            self.connected_headers = {}
        self.conn = conn
        if self.login:
            conn.connect(username=self.login, passcode="x", wait=False)
        else:
            conn.connect(wait=False)
        self._wait(lambda: self.connected_headers, timeout, "CONNECTED")
        # `timeout` bounds the handshake only: an idle subscriber must not time out on reads
        # (a quiet stream, or Kafka away for a while, is no reason to drop the connection).
        conn.transport.socket.settimeout(None)
        for dest, sid in self._subs:
            self.conn.subscribe(dest, id=sid)
        return self

    def connected(self) -> bool:
        return bool(self.connected_headers) and self.conn is not None and self.conn.is_connected()

    def subscribe(self, destination: str, sub_id: str | None = None, receipt: bool = True):
        sid = sub_id or f"sub-{len(self._subs)}"
        self._subs.append((destination, sid))
        if receipt:
            rid = f"r-sub-{uuid.uuid4()}"
            self.conn.subscribe(destination, id=sid, headers={"receipt": rid})
            self.wait_receipt(rid)
        else:
            self.conn.subscribe(destination, id=sid)

    def send(self, destination: str, body: str, headers: dict | None = None) -> None:
        self.conn.send(destination, body, headers=headers or {})

    def wait_receipt(self, rid: str, timeout: float = 10.0) -> None:
        self._wait(lambda: rid in self.receipts, timeout, f"RECEIPT {rid}")

    def find(self, pred) -> list[tuple[dict, dict]]:
        """MESSAGEs whose (headers, json body) satisfy pred."""
        out = []
        with self._lock:
            items = list(self.received)
        for h, b in items:
            try:
                body = json.loads(b)
            except ValueError:
                continue
            if pred(h, body):
                out.append((h, body))
        return out

    def wait_for(self, pred, timeout: float = 15.0, count: int = 1, what: str = "a MESSAGE"):
        def check():
            found = self.find(pred)
            return found if len(found) >= count else None
        return self._wait(check, timeout, what)

    def close(self) -> None:
        if self.conn is not None:
            try:
                self.conn.disconnect()
            except Exception:
                pass
            try:
                self.conn.transport.stop()
            except Exception:
                pass


@pytest.fixture
def stomp_clients():
    """Factory: stomp_clients(port, name, login=None) -> a connected StompClient; all closed at the end."""
    made: list[StompClient] = []

    def make(port: int, name: str = "client", login: str | None = None,
             heartbeats: tuple[int, int] = (0, 0)) -> StompClient:
        c = StompClient(port, name, login, heartbeats)
        made.append(c)
        return c.connect()

    yield make
    for c in made:
        c.close()


# ------------------------------------------------------------------------------------ records

def trade(market: str, trade_id: str | None = None, price: str = "95012000",
          qty: str = "0.0132", side: str = "buy") -> dict:
    """A trade record value as DESIGN.md's producer contract says."""
    return {"market": market, "exchange": "upbit", "price": price, "qty": qty, "side": side,
            "ts": int(time.time() * 1000), "trade_id": trade_id or f"t-{uuid.uuid4()}"}


def await_flow(kafka, market: str, clients: list[StompClient], timeout: float = 45.0) -> None:
    """Produce probe trades for `market` until every client has received one.

    A replica's consumer starts at the latest offset once its partitions are assigned; records
    produced before that moment are (rightly) never delivered. This waits for that moment.
    """
    deadline = time.monotonic() + timeout
    probes: set[str] = set()
    while time.monotonic() < deadline:
        pid = f"probe-{uuid.uuid4()}"
        probes.add(pid)
        kafka.produce("trades", market, trade(market, pid))
        end = min(deadline, time.monotonic() + 1.5)
        while time.monotonic() < end:
            if all(c.find(lambda h, b: b.get("trade_id") in probes) for c in clients):
                return
            time.sleep(0.1)
    missing = [c.name for c in clients if not c.find(lambda h, b: b.get("trade_id") in probes)]
    raise AssertionError(f"no trade for {market} reached {missing} within {timeout}s "
                         f"({len(probes)} probe records produced)")


# ------------------------------------------------------------------------------------ nginx

def nginx_bin() -> str:
    p = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)
    if not p:
        pytest.fail("nginx not found: run scripts/install/kafka-nginx.sh (Debian package nginx-light)")
    return p


class Nginx:
    """Real nginx from the Debian package, as a non-daemon with its own prefix and free port."""

    def __init__(self, prefix: Path, upstream_ports: list[int]):
        self.prefix = Path(prefix)
        self.port = free_port()
        self.upstream_ports = upstream_ports
        self.proc: subprocess.Popen | None = None

    def render(self) -> Path:
        for d in ("tmp/body", "tmp/proxy", "tmp/fastcgi", "tmp/uwsgi", "tmp/scgi"):
            (self.prefix / d).mkdir(parents=True, exist_ok=True)
        ups = "\n".join(f"        server 127.0.0.1:{p} max_fails=1 fail_timeout=5s;"
                        for p in self.upstream_ports)
        conf = (NGINX_TEMPLATE.read_text()
                .replace("{{PREFIX}}", str(self.prefix))
                .replace("{{LISTEN}}", f"127.0.0.1:{self.port}")
                .replace("{{UPSTREAMS}}", ups))
        path = self.prefix / "nginx.conf"
        path.write_text(conf)
        return path

    def start(self, timeout: float = 15.0) -> "Nginx":
        conf = self.render()
        base = [nginx_bin(), "-p", str(self.prefix), "-e", str(self.prefix / "error.log"),
                "-c", str(conf)]
        t = subprocess.run([*base, "-t"], capture_output=True, text=True, timeout=30)
        assert t.returncode == 0, f"nginx -t failed:\n{t.stderr}"
        self.proc = subprocess.Popen([*base, "-g", "daemon off;"], stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                     start_new_session=True)

        def listening():
            if self.proc.poll() is not None:
                raise AssertionError(f"nginx exited ({self.proc.returncode}):\n{self.error_log()}")
            with socket.socket() as s:
                s.settimeout(0.5)
                return s.connect_ex(("127.0.0.1", self.port)) == 0
        deadline = time.monotonic() + timeout
        while not listening():
            if time.monotonic() > deadline:
                self.stop()
                raise AssertionError(f"nginx not listening within {timeout}s:\n{self.error_log()}")
            time.sleep(0.1)
        return self

    def stop(self, timeout: float = 10.0) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)

    def error_log(self) -> str:
        try:
            return (self.prefix / "error.log").read_text(errors="replace")[-3000:]
        except OSError:
            return "(no error log)"


@pytest.fixture
def nginx_factory(tmp_path):
    made: list[Nginx] = []

    def make(upstream_ports: list[int]) -> Nginx:
        n = Nginx(tmp_path / f"nginx-{len(made)}", upstream_ports)
        made.append(n)
        return n.start()

    yield make
    for n in made:
        n.stop()
