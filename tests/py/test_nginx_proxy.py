"""deploy/nginx config, run by real nginx in front of two small WebSocket backends.

This proves the proxy settings (upgrade headers, subprotocol pass-through, spreading clients
over both upstreams, failing over when one is gone) without the gateway; the gateway behind
the same config is covered in test_kafka_gateway.py.
"""
import base64
import hashlib
import re
import socket
import socketserver
import struct
import threading
from pathlib import Path

import pytest
import websocket

from gateway_support import REPO, wait_until

pytestmark = [pytest.mark.nginx, pytest.mark.timeout(60)]

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def _recv_exact(sock, n):
    buf = b""
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise ConnectionError("closed")
        buf += chunk
    return buf


class _Handler(socketserver.BaseRequestHandler):
    def handle(self):
        sock, name = self.request, self.server.name
        req = b""
        while b"\r\n\r\n" not in req:
            chunk = sock.recv(4096)
            if not chunk:
                return
            req += chunk
        headers = {}
        for line in req.split(b"\r\n")[1:]:
            if b":" in line:
                k, v = line.split(b":", 1)
                headers[k.strip().lower()] = v.strip()
        if headers.get(b"upgrade", b"").lower() != b"websocket":
            sock.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            return
        accept = base64.b64encode(hashlib.sha1(headers[b"sec-websocket-key"] + GUID).digest())
        resp = [b"HTTP/1.1 101 Switching Protocols", b"Upgrade: websocket",
                b"Connection: Upgrade", b"Sec-WebSocket-Accept: " + accept]
        if b"sec-websocket-protocol" in headers:
            resp.append(b"Sec-WebSocket-Protocol: "
                        + headers[b"sec-websocket-protocol"].split(b",")[0].strip())
        sock.sendall(b"\r\n".join(resp) + b"\r\n\r\n")
        try:
            while True:
                b0, b1 = _recv_exact(sock, 2)
                opcode, n = b0 & 0x0F, b1 & 0x7F
                if n == 126:
                    n = struct.unpack(">H", _recv_exact(sock, 2))[0]
                elif n == 127:
                    n = struct.unpack(">Q", _recv_exact(sock, 8))[0]
                mask = _recv_exact(sock, 4) if b1 & 0x80 else b"\0\0\0\0"
                data = bytes(c ^ mask[i % 4] for i, c in enumerate(_recv_exact(sock, n)))
                if opcode == 8:
                    sock.sendall(b"\x88\x00")
                    return
                out = f"{name}:".encode() + data + b" xff=" + headers.get(b"x-forwarded-for", b"-")
                sock.sendall(bytes([0x81, len(out)]) + out)
        except (ConnectionError, OSError):
            return


class _Backend(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, name):
        super().__init__(("127.0.0.1", 0), _Handler)
        self.name = name
        self.port = self.server_address[1]
        threading.Thread(target=self.serve_forever, daemon=True).start()

    def close(self):
        if getattr(self, "_closed", False):
            return
        self._closed = True
        self.shutdown()
        self.server_close()


def _ws(port):
    ws = websocket.create_connection(f"ws://127.0.0.1:{port}/ws", timeout=5,
                                     subprotocols=["v12.stomp", "v11.stomp"])
    ws.send("hello")
    return ws, ws.recv()


def test_websocket_upgrade_spread_and_failover(nginx_factory):
    a, b = _Backend("A"), _Backend("B")
    try:
        nginx = nginx_factory([a.port, b.port])
        conns = [_ws(nginx.port) for _ in range(6)]
        names = [reply.split(":", 1)[0] for _, reply in conns]
        for ws, reply in conns:
            assert ws.getsubprotocol() == "v12.stomp"
            assert re.fullmatch(r"[AB]:hello xff=127\.0\.0\.1", reply), reply
        # least_conn with connections held open: both replicas get clients
        assert sorted(names) == ["A"] * 3 + ["B"] * 3, names
        for ws, _ in conns:
            ws.close()
        # one replica gone: new clients still get through, to the other one
        a.close()
        replies = []
        for _ in range(4):
            ws, reply = _ws(nginx.port)
            replies.append(reply.split(":", 1)[0])
            ws.close()
        assert replies == ["B"] * 4, replies
    finally:
        a.close()
        b.close()


def test_plain_http_is_proxied_without_upgrade(nginx_factory):
    b = _Backend("B")
    try:
        nginx = nginx_factory([b.port])
        with socket.create_connection(("127.0.0.1", nginx.port), timeout=5) as s:
            s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            data = s.recv(4096)
        # the backend refuses non-upgrade requests with 400: nginx passed it through untouched
        assert data.startswith(b"HTTP/1.1 400"), data[:100]
    finally:
        b.close()


def _proxy_block(path):
    text = Path(path).read_text()
    m = re.search(r"# BEGIN stompgate proxy settings\n(.*?)# END stompgate proxy settings",
                  text, re.S)
    assert m, f"{path} lacks the BEGIN/END stompgate proxy settings markers"
    return m.group(1)


def test_compose_config_and_test_template_share_proxy_settings():
    d = REPO / "deploy" / "nginx"
    assert _proxy_block(d / "nginx.conf") == _proxy_block(d / "nginx.conf.template")
    conf = (d / "nginx.conf").read_text()
    assert "gateway-a:8080" in conf and "gateway-b:8080" in conf


# ------------------------------------------------- the gateway itself behind the same nginx

def _stomp_via(port, local_ip, headers=(), path="/ws"):
    """Opens a STOMP session through nginx from `local_ip`; returns the first frame's command."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=5, source_address=(local_ip, 0))
    ws = websocket.create_connection(f"ws://127.0.0.1:{port}{path}", timeout=5, socket=sock,
                                     subprotocols=["v12.stomp"], header=list(headers))
    ws.send("CONNECT\naccept-version:1.2\nhost:x\n\n\0")
    reply = ws.recv()
    if isinstance(reply, bytes):
        reply = reply.decode()
    return ws, reply.split("\n", 1)[0], reply


def test_forged_forwarded_for_cannot_pass_the_per_address_cap(nginx_factory, tmp_path):
    from gateway_support import Gateway

    gw = Gateway("edge", tmp_path, ["--demo-rate", "0", "--trusted-proxies", "127.0.0.1",
                                    "--max-connections-per-ip", "5",
                                    "--connect-rate-per-ip", "0"]).start()
    try:
        nginx = nginx_factory([gw.port])
        results, held = [], []
        # One client (127.0.0.4; nginx itself is 127.0.0.1) pretends to be ten others; nginx
        # appends its real address, which is what the gateway must count.
        for i in range(10):
            ws, command, _ = _stomp_via(nginx.port, "127.0.0.4",
                                        [f"X-Forwarded-For: 198.51.100.{i}"])
            results.append(command)
            held.append(ws)
        assert results.count("CONNECTED") == 5, results
        assert results.count("ERROR") == 5, results
        # A second real address still gets in.
        ws, command, _ = _stomp_via(nginx.port, "127.0.0.2", ["X-Forwarded-For: 127.0.0.1"])
        assert command == "CONNECTED"
        held.append(ws)
        status, body = gw.get("/metrics")
        assert status == 200
        assert b'stompgate_refused_total{reason="too_many_from_address"} 5' in body, body
        # The token in ?access_token= never lands in nginx's access log.
        ws, command, _ = _stomp_via(nginx.port, "127.0.0.3", path="/ws?access_token=s3cr3t-t0ken")
        assert command == "CONNECTED"
        for w in [*held, ws]:
            w.close()
        log = nginx.prefix / "access.log"
        wait_until(lambda: log.read_text().count("GET /ws ") >= 12, 5, "nginx access log lines")
        text = log.read_text()
        assert "s3cr3t-t0ken" not in text and "access_token" not in text, text
    finally:
        gw.kill()


def test_a_client_inside_the_trusted_ranges_cannot_name_its_address(nginx_factory, tmp_path):
    # As in docker-compose, the gateways trust whole private ranges (here all of 127/8), and a
    # client on such a network reaches nginx: its own address is "trusted", so a forged entry
    # left of it would be taken as the client if nginx appended. nginx replaces the header.
    from gateway_support import Gateway

    gw = Gateway("edge-ranges", tmp_path, ["--demo-rate", "0", "--trusted-proxies", "127.0.0.0/8",
                                           "--max-connections-per-ip", "3",
                                           "--connect-rate-per-ip", "0"]).start()
    held = []
    try:
        nginx = nginx_factory([gw.port])
        results = []
        for i in range(6):
            ws, command, _ = _stomp_via(nginx.port, "127.0.0.4",
                                        [f"X-Forwarded-For: 198.51.100.{i}"])
            results.append(command)
            held.append(ws)
        assert results == ["CONNECTED"] * 3 + ["ERROR"] * 3, results
    finally:
        for w in held:
            w.close()
        gw.kill()
