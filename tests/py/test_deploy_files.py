"""docker-compose.yml, the Dockerfiles and the feed script hang together.

No Docker engine runs on the build machines, so this checks what can be checked without one:
the compose file parses, every file it references exists, the services are wired as the
deployment needs (3 brokers, RF 3 topics, two replicas behind nginx), and the demo feed
produces records in the producer contract to a real Kafka.
"""
import json
import shutil
import subprocess
import sys

import pytest
import yaml

from gateway_support import REPO

COMPOSE = REPO / "docker-compose.yml"


@pytest.fixture(scope="module")
def compose():
    return yaml.safe_load(COMPOSE.read_text())


def test_compose_services_and_files(compose):
    s = compose["services"]
    assert {"kafka-1", "kafka-2", "kafka-3", "kafka-init", "gateway-a", "gateway-b", "nginx",
            "kafka-ui", "feed"} <= set(s)
    brokers = "kafka-1:9092,kafka-2:9092,kafka-3:9092"
    for name in ("gateway-a", "gateway-b"):
        assert s[name]["environment"]["STOMPGATE_KAFKA_BROKERS"] == brokers
        assert s[name]["build"] == "."
        assert s[name]["depends_on"]["kafka-init"]["condition"] == "service_completed_successfully"
    voters = {s[f"kafka-{n}"]["environment"]["KAFKA_CONTROLLER_QUORUM_VOTERS"] for n in (1, 2, 3)}
    assert voters == {"1@kafka-1:9093,2@kafka-2:9093,3@kafka-3:9093"}
    ids = sorted(s[f"kafka-{n}"]["environment"]["KAFKA_NODE_ID"] for n in (1, 2, 3))
    assert ids == ["1", "2", "3"]
    init = "\n".join(s["kafka-init"]["command"])
    assert "trades chat" in init and "--replication-factor 3" in init
    # files the compose file and the images use
    for vol in s["nginx"]["volumes"]:
        src = vol.split(":")[0]
        assert (REPO / src).is_file(), f"nginx volume source {src} missing"
    assert (REPO / "Dockerfile").is_file()
    assert (REPO / s["feed"]["build"] / "Dockerfile").is_file()
    assert (REPO / s["feed"]["build"] / "feed.py").is_file()
    conf = (REPO / "deploy/nginx/nginx.conf").read_text()
    for name in ("gateway-a", "gateway-b"):
        assert f"server {name}:8080" in conf


def test_dockerfiles_reference_existing_paths():
    text = (REPO / "Dockerfile").read_text()
    assert "FROM rust:" in text and "FROM debian:" in text and "zlib1g-dev" in text
    feed = (REPO / "deploy/feed/Dockerfile").read_text()
    for line in feed.splitlines():
        if line.startswith("COPY "):
            for src in line.split()[1:-1]:
                assert (REPO / "deploy/feed" / src).exists(), f"deploy/feed/{src} missing"


@pytest.mark.skipif(shutil.which("docker-compose") is None, reason="docker-compose not installed")
def test_docker_compose_config_parses():
    p = subprocess.run(["docker-compose", "-f", str(COMPOSE), "config", "-q"],
                       capture_output=True, text=True, timeout=60, cwd=REPO)
    assert p.returncode == 0, p.stderr


@pytest.mark.kafka
@pytest.mark.timeout(120)
def test_feed_produces_contract_trades(kafka):
    start = kafka.end_offsets("trades")
    markets = "KRW-BTC,KRW-ETH"
    p = subprocess.run([sys.executable, str(REPO / "deploy/feed/feed.py"), "--brokers",
                        kafka.bootstrap, "--markets", markets, "--count", "20", "--rate", "50"],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    assert "20 trades produced" in p.stderr
    records = kafka.read("trades", start=start, want=lambda rs: len(rs) >= 20, timeout=20)
    assert len(records) == 20
    for m in records:
        v = json.loads(m.value())
        assert set(v) == {"market", "exchange", "price", "qty", "side", "ts", "trade_id"}
        assert m.key().decode() == v["market"] and v["market"] in markets.split(",")
        assert isinstance(v["price"], str) and float(v["price"]) > 0
        assert isinstance(v["qty"], str) and float(v["qty"]) > 0
        assert v["side"] in ("buy", "sell") and isinstance(v["ts"], int)
