"""docker-compose.yml, the Dockerfiles, the Kubernetes manifests and the feed script hang together.

The stack itself runs in scripts/compose-test.sh (tests/compose); this checks, without an
engine, what an edit most easily breaks: the compose file parses, every file it references
exists, the services are wired as the deployment needs (3 brokers, RF 3 topics with
min.insync.replicas=2, two replicas behind nginx, the Kafka UI only in its profile), the
manifests in deploy/k8s are valid Kubernetes objects (kubernetes-validate, which ships its
schemas) with the probes, budget and autoscaler the deployment needs, and the demo feed
produces records in the producer contract to a real Kafka.
"""
import json
import re
import shutil
import subprocess
import sys

import pytest
import yaml

from gateway_support import REPO, Gateway, http_get

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
    assert "--replication-factor 3" in init and "min.insync.replicas=2" in init
    for topic in ("trades", "chat", "markets"):
        assert re.search(rf"^create {topic} \d+$", init, re.M), f"kafka-init creates no {topic}"
    for n in (1, 2, 3):
        env = s[f"kafka-{n}"]["environment"]
        assert env["KAFKA_MIN_INSYNC_REPLICAS"] == "2" and env["KAFKA_DEFAULT_REPLICATION_FACTOR"] == "3"
    # a plain `docker compose up` needs neither the Kafka UI nor the observability images
    profiles = {name: svc.get("profiles") for name, svc in s.items()}
    assert profiles.pop("kafka-ui") == ["ui"]
    for name in OBSERVABILITY:
        assert profiles.pop(name) == ["observability"], name
    assert all(p is None for p in profiles.values()), profiles
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


OBSERVABILITY = ("prometheus", "blackbox", "grafana")


def test_observability_services_scrape_the_internal_port(compose):
    """Prometheus scrapes the port each replica serves /metrics on, and probes /readyz on the
    public one; every file the three services mount exists."""
    s = compose["services"]
    prom = yaml.safe_load((REPO / "deploy/prometheus/prometheus.yml").read_text())
    jobs = {job["job_name"]: job for job in prom["scrape_configs"]}
    metrics = {t for c in jobs["stompgate"]["static_configs"] for t in c["targets"]}
    probes = {t for c in jobs["stompgate-readyz"]["static_configs"] for t in c["targets"]}
    for name in ("gateway-a", "gateway-b"):
        env = s[name]["environment"]
        internal = env["STOMPGATE_INTERNAL_PORT"]
        assert f"{name}:{internal}" in metrics, metrics
        assert f"http://{name}:{env['STOMPGATE_PORT']}/readyz" in probes, probes
        # published on loopback only, for checks from this machine
        assert any(p.startswith("127.0.0.1:") and p.endswith(f":{internal}") for p in s[name]["ports"])
    relabel = jobs["stompgate-readyz"]["relabel_configs"]
    assert {"target_label": "__address__", "replacement": "blackbox:9115"} in relabel
    for name in OBSERVABILITY:
        for vol in s[name].get("volumes", []):
            src = REPO / vol.split(":")[0]
            assert src.exists(), f"{name} mounts {src}, which is missing"
    mounted = {v.split(":")[1] for v in s["prometheus"]["volumes"]}
    assert {"/etc/prometheus/" + f for f in prom["rule_files"]} <= mounted
    ds = yaml.safe_load((REPO / "deploy/grafana/provisioning/datasources/prometheus.yml").read_text())
    assert ds["datasources"][0]["url"] == "http://prometheus:9090"
    dash = yaml.safe_load((REPO / "deploy/grafana/provisioning/dashboards/stompgate.yml").read_text())
    dash_path = dash["providers"][0]["options"]["path"]
    assert any(v.endswith(":" + dash_path + ":ro") for v in s["grafana"]["volumes"])


def test_dockerfiles_reference_existing_paths():
    text = (REPO / "Dockerfile").read_text()
    assert "FROM rust:" in text and "FROM debian:" in text and "zlib1g-dev" in text
    # liveness in the image; readiness (/readyz) is for load balancers
    [health] = re.findall(r"^HEALTHCHECK .*\n.*", text, re.M)
    assert "/healthz" in health and "/readyz" not in health
    cargo = (REPO / "Cargo.toml").read_text()
    assert re.search(r'^rust-version = "1\.88"$', cargo, re.M)
    assert re.search(r"Rust >= 1\.88", text)
    feed = (REPO / "deploy/feed/Dockerfile").read_text()
    for line in feed.splitlines():
        if line.startswith("COPY "):
            for src in line.split()[1:-1]:
                assert (REPO / "deploy/feed" / src).exists(), f"deploy/feed/{src} missing"


# ------------------------------------------------------------------------ Kubernetes manifests

K8S = REPO / "deploy" / "k8s"


def _k8s_objects() -> dict:
    objs = {}
    for f in sorted(K8S.glob("*.yaml")):
        for doc in yaml.safe_load_all(f.read_text()):
            objs[doc["kind"]] = doc
    return objs


def _validate(*paths) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "kubernetes_validate", "--strict", "--quiet",
                           *map(str, paths)], capture_output=True, text=True, timeout=120)


def test_k8s_manifests_are_valid_against_the_shipped_schemas():
    files = sorted(K8S.glob("*.yaml"))
    assert len(files) >= 6, files
    p = _validate(*files)
    assert p.returncode == 0, p.stdout + p.stderr


def test_k8s_validator_rejects_a_broken_manifest(tmp_path):
    # the validator is no rubber stamp: a misspelt field in the Deployment fails
    bad = (K8S / "deployment.yaml").read_text().replace("readinessProbe:", "readynessProbe:")
    (tmp_path / "deployment.yaml").write_text(bad)
    p = _validate(tmp_path / "deployment.yaml")
    assert p.returncode != 0 and "readynessProbe" in p.stdout + p.stderr, p.stdout + p.stderr


def test_k8s_deployment_probes_budget_autoscaler_ingress():
    o = _k8s_objects()
    assert {"Deployment", "Service", "Ingress", "PodDisruptionBudget",
            "HorizontalPodAutoscaler", "ConfigMap"} <= set(o)
    [c] = o["Deployment"]["spec"]["template"]["spec"]["containers"]
    assert c["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert c["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert c["ports"][0]["containerPort"] == 8080
    labels = o["Deployment"]["spec"]["template"]["metadata"]["labels"]
    for kind in ("Service", "PodDisruptionBudget"):
        sel = o[kind]["spec"]["selector"]
        sel = sel.get("matchLabels", sel)
        assert sel.items() <= labels.items(), f"{kind} selects no gateway pod"
    # the autoscaler scales on a metric the gateway exports
    metrics = (REPO / "src" / "metrics.rs").read_text()
    pods = [m for m in o["HorizontalPodAutoscaler"]["spec"]["metrics"] if m["type"] == "Pods"]
    name = pods[0]["pods"]["metric"]["name"]
    assert name.startswith("stompgate_") and f'"{name.removeprefix("stompgate_")}"' in metrics
    assert o["HorizontalPodAutoscaler"]["spec"]["minReplicas"] >= 2
    ann = o["Ingress"]["metadata"]["annotations"]
    assert int(ann["nginx.ingress.kubernetes.io/proxy-read-timeout"]) >= 3600
    assert int(ann["nginx.ingress.kubernetes.io/proxy-send-timeout"]) >= 3600
    backend = o["Ingress"]["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]
    assert backend["name"] == o["Service"]["metadata"]["name"]


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


def test_k8s_configmap_settings_start_the_real_gateway(tmp_path):
    # The ConfigMap's variables, as the Deployment hands them over, are settings the binary
    # accepts (a renamed or refused variable stops the start); the operator endpoints are on
    # the internal port only. Kafka is not reachable here: the replica serves, not ready.
    import socket
    env = dict(_k8s_objects()["ConfigMap"]["data"])
    assert int(env["STOMPGATE_INTERNAL_PORT"]) != int(env["STOMPGATE_PORT"])
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        internal = s.getsockname()[1]
    # Loopback ports for the test: the public one is chosen by Gateway (--port 0).
    env.update(STOMPGATE_INTERNAL_PORT=str(internal), STOMPGATE_KAFKA_BROKERS="127.0.0.1:9")
    g = Gateway("k8s-env", tmp_path, [], env=env)
    try:
        g.start()
        assert http_get(g.port, "/healthz")[0] == 200
        assert http_get(g.port, "/metrics")[0] == 404
        assert http_get(internal, "/metrics")[0] == 200
    finally:
        g.terminate()
