"""pytest setup for tests/py: markers and the shared fixtures from kafka_support."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from kafka_support import kafka, kafka_factory  # noqa: E402,F401  (fixtures)
from gateway_support import gateways, nginx_factory, stomp_clients  # noqa: E402,F401


def pytest_configure(config):
    config.addinivalue_line(
        "markers",
        "kafka: needs a real Kafka cluster, started by scripts/kafka.sh",
    )
    config.addinivalue_line(
        "markers",
        "gateway_kafka: runs the stompgate binary against real Kafka (and nginx); "
        "select with -m gateway_kafka, leave out with -m 'not gateway_kafka'",
    )
    config.addinivalue_line("markers", "nginx: needs the nginx binary")
