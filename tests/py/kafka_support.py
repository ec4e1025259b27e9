"""Real Kafka for the Python tests, run through scripts/kafka.sh.

Fixtures (imported by conftest.py):
  kafka          one single-broker cluster for the whole session (topics trades, chat).
                 If KAFKA_DIR names a cluster that scripts/kafka.sh already runs, that one is
                 used and left running; otherwise a new one is started in a temp folder and
                 stopped at the end.
  kafka_factory  callable(brokers=1) -> a new, private cluster for a test that stops or
                 restarts brokers; all of them are stopped when the test ends.

Every wait is bounded; failures carry the script's output and the broker log tails.
"""
from __future__ import annotations

import atexit
import json
import os
import shutil
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "scripts" / "kafka.sh"
START_TIMEOUT = int(os.environ.get("KAFKA_START_TIMEOUT", "120"))


def _tail(path: Path, lines: int = 25) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


class KafkaCluster:
    """A Kafka cluster in `dir`, driven by scripts/kafka.sh."""

    def __init__(self, dir: Path, brokers: int = 1, owned: bool = True):
        self.dir = Path(dir)
        self.brokers = brokers
        self.owned = owned  # stop and delete it at the end
        self._bootstrap: str | None = None

    # -- script -----------------------------------------------------------------------
    def _run(self, *args: str, timeout: float = START_TIMEOUT + 60) -> str:
        cmd = ["bash", str(SCRIPT), *args, "--dir", str(self.dir)]
        try:
            p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                               stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired as e:
            raise RuntimeError(f"{' '.join(cmd)} did not finish in {timeout}s\n{e.stderr}\n"
                               + self.log_tails()) from None
        if p.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed ({p.returncode}):\n{p.stdout}\n{p.stderr}\n"
                               + self.log_tails())
        return p.stdout

    def start(self) -> "KafkaCluster":
        t0 = time.monotonic()
        self._run("start", "--brokers", str(self.brokers))
        self._bootstrap = (self.dir / "bootstrap").read_text().strip()
        self.start_seconds = time.monotonic() - t0
        return self

    def stop(self) -> None:
        self._run("stop", timeout=120)

    def destroy(self) -> None:
        try:
            self._run("stop", "--clean", timeout=120)
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)

    def stop_broker(self, n: int) -> None:
        self._run("stop-broker", str(n), timeout=120)

    def start_broker(self, n: int) -> None:
        self._run("start-broker", str(n))

    def is_running(self) -> bool:
        p = subprocess.run(["bash", str(SCRIPT), "status", "--dir", str(self.dir)],
                           capture_output=True, text=True, timeout=30)
        return p.returncode == 0

    @property
    def bootstrap(self) -> str:
        if self._bootstrap is None:
            self._bootstrap = (self.dir / "bootstrap").read_text().strip()
        return self._bootstrap

    def log_tails(self) -> str:
        parts = []
        for log in sorted(self.dir.glob("broker-*.log")):
            parts.append(f"--- {log} (tail)\n{_tail(log)}")
        return "\n".join(parts)

    # -- clients (confluent-kafka) ------------------------------------------------------
    def producer(self, **conf):
        from confluent_kafka import Producer
        base = {"bootstrap.servers": self.bootstrap, "acks": "all",
                "enable.idempotence": True, "linger.ms": 0,
                "message.timeout.ms": 30000, "socket.connection.setup.timeout.ms": 5000}
        base.update(conf)
        return Producer(base)

    def produce(self, topic: str, key: str, value, headers: dict | None = None,
                partition: int | None = None, timeout: float = 30.0,
                timestamp: int | None = None) -> tuple[int, int]:
        """Produce one record (acks=all) and wait for the broker; returns (partition, offset).

        `timestamp` (ms) sets the record's Kafka timestamp; by default the producer's clock."""
        if not isinstance(value, (bytes, str)):
            value = json.dumps(value)
        p = self.producer()
        result: dict = {}

        def done(err, msg):
            result["err"], result["msg"] = err, msg

        kw = {"key": key, "value": value, "on_delivery": done}
        if headers:
            kw["headers"] = list(headers.items())
        if partition is not None:
            kw["partition"] = partition
        if timestamp is not None:
            kw["timestamp"] = timestamp
        p.produce(topic, **kw)
        left = p.flush(timeout)
        if left or "msg" not in result:
            raise AssertionError(f"record to {topic} not acknowledged within {timeout}s")
        if result["err"] is not None:
            raise AssertionError(f"produce to {topic} failed: {result['err']}")
        return result["msg"].partition(), result["msg"].offset()

    def admin(self):
        from confluent_kafka.admin import AdminClient
        return AdminClient({"bootstrap.servers": self.bootstrap})

    def partitions(self, topic: str, timeout: float = 20.0) -> dict:
        """{partition: leader broker id} of a topic."""
        md = self.admin().list_topics(topic=topic, timeout=timeout)
        t = md.topics[topic]
        if t.error is not None:
            raise AssertionError(f"topic {topic}: {t.error}")
        return {pid: p.leader for pid, p in t.partitions.items()}

    def end_offsets(self, topic: str, timeout: float = 20.0) -> dict:
        """{partition: high watermark} of a topic, asked from the brokers now."""
        from confluent_kafka import Consumer, TopicPartition
        c = Consumer({"bootstrap.servers": self.bootstrap, "group.id": f"probe-{uuid.uuid4()}",
                      "enable.auto.commit": False})
        try:
            out = {}
            for pid in self.partitions(topic, timeout):
                _, high = c.get_watermark_offsets(TopicPartition(topic, pid), timeout=timeout)
                out[pid] = high
            return out
        finally:
            c.close()

    def read(self, topic: str, start: dict | None = None, want=None, timeout: float = 20.0):
        """Records of `topic` from `start` ({partition: offset}; default: the beginning).

        Stops when `want(records)` is true or after `timeout` seconds; returns the list of
        confluent_kafka Message objects (errors left out).
        """
        from confluent_kafka import Consumer, TopicPartition, OFFSET_BEGINNING
        parts = self.partitions(topic)
        c = Consumer({"bootstrap.servers": self.bootstrap, "group.id": f"read-{uuid.uuid4()}",
                      "enable.auto.commit": False, "auto.offset.reset": "earliest"})
        try:
            c.assign([TopicPartition(topic, pid, (start or {}).get(pid, OFFSET_BEGINNING))
                      for pid in parts])
            got = []
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                m = c.poll(0.2)
                if m is not None and m.error() is None:
                    got.append(m)
                if want is not None and want(got):
                    break
            return got
        finally:
            c.close()


def _new_dir(prefix: str) -> Path:
    return Path(tempfile.mkdtemp(prefix=prefix))


_live: list[KafkaCluster] = []


@atexit.register
def _stop_leftovers():  # a test run that is interrupted still ends its brokers
    for k in list(_live):
        if k.owned:
            try:
                k.destroy()
            except Exception:
                pass


@pytest.fixture(scope="session")
def kafka():
    env_dir = os.environ.get("KAFKA_DIR")
    if env_dir and (Path(env_dir) / "cluster.env").exists():
        k = KafkaCluster(Path(env_dir), owned=False)
        if k.is_running():
            yield k
            return
    k = KafkaCluster(_new_dir("stompgate-kafka-"), brokers=1)
    _live.append(k)
    try:
        k.start()
        yield k
    finally:
        k.destroy()
        _live.remove(k)


@pytest.fixture
def kafka_factory():
    made: list[KafkaCluster] = []

    def make(brokers: int = 1) -> KafkaCluster:
        k = KafkaCluster(_new_dir(f"stompgate-kafka{brokers}-"), brokers=brokers)
        made.append(k)
        _live.append(k)
        return k.start()

    try:
        yield make
    finally:
        for k in made:
            try:
                k.destroy()
            finally:
                _live.remove(k)
