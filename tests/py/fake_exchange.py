"""A local stand-in for Upbit's and Bithumb's public WebSocket API, and the feed process.

FakeExchange speaks the real message shapes on ws://127.0.0.1:<port>/websocket/v1 (RFC 6455
written out with the standard library, so nothing reaches the internet):
  - the request `[{"ticket":...},{"type":"trade","codes":[...]},{"format":"DEFAULT"|"SIMPLE"}]`
    is validated; a malformed one is answered `{"error":{"name":"WRONG_FORMAT",...}}`;
  - after every (re)subscription the last trade of each code is sent again as SNAPSHOT;
  - trades go out as binary frames (Upbit) or text frames (Bithumb), with DEFAULT or SIMPLE
    keys, prices and volumes written as the exact JSON number text given;
  - the text `PING` is answered `{"status":"UP"}`;
  - drop() cuts every connection without a close frame; reject(name) refuses requests.

Feed runs `stompgate feed` as a child process and reads its metrics.
"""
from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import signal
import socket
import struct
import subprocess
import threading
import time
from pathlib import Path

from gateway_support import gateway_bin, http_get, wait_until

GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
SIMPLE = {"type": "ty", "code": "cd", "trade_price": "tp", "trade_volume": "tv", "ask_bid": "ab",
          "prev_closing_price": "pcp", "change": "c", "change_price": "cp", "trade_date": "td",
          "trade_time": "ttm", "trade_timestamp": "ttms", "timestamp": "tms",
          "sequential_id": "sid", "stream_type": "st"}


def frame(opcode: int, payload: bytes) -> bytes:
    """One unmasked, final server frame."""
    n = len(payload)
    if n < 126:
        return struct.pack("!BB", 0x80 | opcode, n) + payload
    if n < 65536:
        return struct.pack("!BBH", 0x80 | opcode, 126, n) + payload
    return struct.pack("!BBQ", 0x80 | opcode, 127, n) + payload


class Conn:
    def __init__(self, sock: socket.socket):
        self.sock = sock
        self.lock = threading.Lock()
        self.codes: list[str] | None = None
        self.format = "DEFAULT"
        self.open = True

    def send(self, opcode: int, payload: bytes) -> None:
        with self.lock:
            if self.open:
                try:
                    self.sock.sendall(frame(opcode, payload))
                except OSError:
                    self.open = False

    def recv_exact(self, n: int) -> bytes:
        buf = b""
        while len(buf) < n:
            chunk = self.sock.recv(n - len(buf))
            if not chunk:
                raise ConnectionError("closed")
            buf += chunk
        return buf

    def read_frame(self) -> tuple[int, bytes]:
        b0, b1 = self.recv_exact(2)
        opcode, n = b0 & 0x0F, b1 & 0x7F
        if n == 126:
            n = struct.unpack("!H", self.recv_exact(2))[0]
        elif n == 127:
            n = struct.unpack("!Q", self.recv_exact(8))[0]
        mask = self.recv_exact(4) if b1 & 0x80 else b"\0\0\0\0"
        data = bytes(c ^ mask[i % 4] for i, c in enumerate(self.recv_exact(n)))
        return opcode, data


class FakeExchange:
    def __init__(self, name: str, binary: bool):
        self.name, self.binary = name, binary
        self.server = socket.socket()
        self.server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.server.bind(("127.0.0.1", 0))
        self.server.listen(16)
        self.port = self.server.getsockname()[1]
        self.url = f"ws://127.0.0.1:{self.port}/websocket/v1"
        self.conns: list[Conn] = []
        self.requests: list = []     # every request received (parsed JSON, or the raw text)
        self.pings = 0
        self.connections = 0
        self.last: dict[str, dict] = {}  # code -> last trade (DEFAULT keys, raw JSON texts)
        self.rejecting: str | None = None
        self.silent = False  # True: PINGs go unanswered (a half-dead connection)
        self.seq = int(time.time() * 1000) * 1000
        self.cond = threading.Condition()
        self.stopped = False
        threading.Thread(target=self._accept, daemon=True, name=f"fake-{name}").start()

    # -- server -------------------------------------------------------------------------
    def _accept(self):
        while not self.stopped:
            try:
                sock, _ = self.server.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(sock,), daemon=True).start()

    def _serve(self, sock: socket.socket):
        conn = Conn(sock)
        try:
            req = b""
            while b"\r\n\r\n" not in req:
                chunk = sock.recv(4096)
                if not chunk:
                    return
                req += chunk
            key = re.search(rb"(?i)sec-websocket-key:\s*(\S+)", req).group(1).decode()
            accept = base64.b64encode(hashlib.sha1((key + GUID).encode()).digest()).decode()
            sock.sendall(("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                          "Connection: Upgrade\r\nSec-WebSocket-Accept: " + accept + "\r\n\r\n")
                         .encode())
            with self.cond:
                self.conns.append(conn)
                self.connections += 1
                self.cond.notify_all()
            while True:
                opcode, data = conn.read_frame()
                if opcode == 8:
                    conn.send(8, data[:2])
                    return
                if opcode == 9:
                    conn.send(10, data)
                elif opcode in (1, 2):
                    self._message(conn, data.decode("utf-8", "replace"))
        except (OSError, ConnectionError, AttributeError, ValueError):
            pass
        finally:
            conn.open = False
            try:
                sock.close()
            except OSError:
                pass
            with self.cond:
                if conn in self.conns:
                    self.conns.remove(conn)
                self.cond.notify_all()

    def _error(self, conn: Conn, name: str, message: str):
        conn.send(1, json.dumps({"error": {"name": name, "message": message}}).encode())

    def _message(self, conn: Conn, text: str):
        if text == "PING":
            with self.cond:
                self.pings += 1
            if not self.silent:
                conn.send(1, b'{"status":"UP"}')
            return
        try:
            req = json.loads(text)
        except ValueError:
            req = text
        with self.cond:
            self.requests.append(req)
            self.cond.notify_all()
        if self.rejecting:
            return self._error(conn, self.rejecting, "request refused by the test")
        ok = (isinstance(req, list) and any(isinstance(o, dict) and isinstance(o.get("ticket"), str)
                                            for o in req))
        types = [o for o in req if isinstance(o, dict) and "type" in o] if ok else []
        fmt = [o["format"] for o in req if isinstance(o, dict) and "format" in o] if ok else []
        if not ok:
            return self._error(conn, "NO_TICKET" if isinstance(req, list) else "WRONG_FORMAT",
                               "request must be a JSON array with a ticket object")
        if (len(types) != 1 or types[0]["type"] != "trade" or not isinstance(types[0].get("codes"), list)
                or not all(isinstance(c, str) and c == c.upper() for c in types[0]["codes"])
                or (fmt and fmt[0] not in ("DEFAULT", "SIMPLE"))):
            return self._error(conn, "WRONG_FORMAT", "a trade request needs upper-case codes")
        with self.cond:
            conn.codes = list(types[0]["codes"])
            conn.format = fmt[0] if fmt else "DEFAULT"
            snapshots = [self.last[c] for c in conn.codes if c in self.last]
            self.cond.notify_all()
        for t in snapshots:
            self._send_trade(conn, {**t, "stream_type": '"SNAPSHOT"'})

    def _send_trade(self, conn: Conn, fields: dict):
        keys = SIMPLE if conn.format == "SIMPLE" else {}
        text = "{" + ",".join(f'"{keys.get(k, k)}":{v}' for k, v in fields.items()) + "}"
        conn.send(2 if self.binary else 1, text.encode())

    # -- test controls ------------------------------------------------------------------
    def trade(self, code: str, price: str, volume: str, side: str = "BID",
              seq: int | None = None) -> dict:
        """Sends one REALTIME trade (price and volume as exact JSON number text) to every
        connection subscribed to `code`; returns what the feed should produce."""
        with self.cond:
            self.seq += 1
            sid = seq if seq is not None else self.seq
        now = int(time.time() * 1000)
        fields = {"type": '"trade"', "code": json.dumps(code), "timestamp": str(now + 3),
                  "trade_date": '"2026-12-02"', "trade_time": '"07:00:00"',
                  "trade_timestamp": str(now), "trade_price": price, "trade_volume": volume,
                  "ask_bid": json.dumps(side), "prev_closing_price": price, "change": '"EVEN"',
                  "change_price": "0", "sequential_id": str(sid),
                  "stream_type": '"REALTIME"'}
        with self.cond:
            self.last[code] = fields
            targets = [c for c in self.conns if c.codes and code in c.codes]
        for c in targets:
            self._send_trade(c, fields)
        return {"market": code, "exchange": self.name, "price": price, "qty": volume,
                "side": "buy" if side == "BID" else "sell", "ts": now, "trade_id": str(sid)}

    def burst(self, code: str, n: int, price: str = "95000000", volume: str = "0.0001") -> list[str]:
        """Sends `n` trades of `code` in one write; returns their sequential ids."""
        now = int(time.time() * 1000)
        with self.cond:
            first = self.seq + 1
            self.seq += n
            targets = [c for c in self.conns if c.codes and code in c.codes]
        ids = [str(first + i) for i in range(n)]
        for c in targets:
            keys = SIMPLE if c.format == "SIMPLE" else {}
            k = lambda name: keys.get(name, name)  # noqa: E731
            out = bytearray()
            for sid in ids:
                payload = (f'{{"{k("type")}":"trade","{k("code")}":"{code}","{k("trade_price")}":{price},'
                           f'"{k("trade_volume")}":{volume},"{k("ask_bid")}":"BID",'
                           f'"{k("trade_timestamp")}":{now},"{k("sequential_id")}":{sid},'
                           f'"{k("stream_type")}":"REALTIME"}}').encode()
                out += frame(2 if self.binary else 1, payload)
            with c.lock:
                c.sock.sendall(out)
        return ids

    def subscribed(self) -> set[str] | None:
        """Codes of the live subscription (None if no connection is subscribed)."""
        with self.cond:
            live = [c for c in self.conns if c.open and c.codes is not None]
            return set(live[-1].codes) if live else None

    def wait_subscribed(self, codes, timeout: float = 15.0) -> float:
        """Waits until the live subscription is exactly `codes`; returns the seconds it took."""
        t0 = time.monotonic()
        want = set(codes)
        wait_until(lambda: self.subscribed() == want, timeout,
                   f"{self.name} subscription {sorted(want)} (now {self.subscribed()})", 0.05)
        return time.monotonic() - t0

    def drop(self) -> None:
        """Cuts every connection with no close frame (a network failure)."""
        with self.cond:
            conns = list(self.conns)
        for c in conns:
            c.open = False
            try:
                c.sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def reject(self, name: str | None) -> None:
        self.rejecting = name

    def stop(self) -> None:
        self.stopped = True
        self.drop()
        self.server.close()


class Feed:
    """`stompgate feed` as a child process."""

    LINE = re.compile(r"stompgate feed metrics on http://127\.0\.0\.1:(\d+)/metrics")

    def __init__(self, log_dir: Path, args: list[str]):
        self.log_path = Path(log_dir) / "feed.log"
        self.args = args
        self.proc = None
        self.port = None

    def start(self, timeout: float = 30.0) -> "Feed":
        cmd = [str(gateway_bin()), "feed", "--metrics-port", "0", "--bind", "127.0.0.1",
               "--feed-backoff-ms", "100", "--feed-backoff-max-ms", "1000", *self.args]
        env = {**os.environ, "RUST_LOG": os.environ.get("RUST_LOG", "info")}
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, env=env, text=True, bufsize=1,
                                     errors="replace", start_new_session=True)
        found = threading.Event()
        logf = open(self.log_path, "a")
        logf.write(f"=== {' '.join(cmd)}\n")

        def pump(proc=self.proc):
            for line in proc.stdout:
                logf.write(line)
                logf.flush()
                m = self.LINE.search(line)
                if m and not found.is_set():
                    self.port = int(m.group(1))
                    found.set()
            logf.close()

        threading.Thread(target=pump, daemon=True).start()
        if not found.wait(timeout):
            self.stop()
            raise AssertionError(f"feed printed no metrics line within {timeout}s:\n{self.log()}")
        return self

    def metric(self, name: str, exchange: str, **labels) -> float:
        status, body = http_get(self.port, "/metrics")
        assert status == 200, body
        total = 0.0
        for line in body.decode().splitlines():
            if not line.startswith(f"stompgate_feed_{name}{{"):
                continue
            if f'exchange="{exchange}"' not in line:
                continue
            if all(f'{k}="{v}"' in line for k, v in labels.items()):
                total += float(line.rsplit(" ", 1)[1])
        return total

    def log(self, lines: int = 60) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def stop(self, timeout: float = 15.0) -> int | None:
        """SIGTERM, then SIGKILL after `timeout`; returns the exit code."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        return self.proc.returncode if self.proc else None
