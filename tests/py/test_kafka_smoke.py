"""The test Kafka (scripts/kafka.sh) works: a record produced by an ordinary client is read back."""
import json
import time
import uuid

import pytest

pytestmark = [pytest.mark.kafka, pytest.mark.timeout(240)]


def test_topics_exist_with_partitions(kafka):
    for topic in ("trades", "chat"):
        leaders = kafka.partitions(topic)
        assert len(leaders) >= 1, f"topic {topic} has no partitions"
        assert all(leader >= 0 for leader in leaders.values()), f"{topic} lacks leaders: {leaders}"


def test_produced_trade_is_read_back(kafka):
    trade = {"market": "KRW-BTC", "exchange": "upbit", "price": "95012000", "qty": "0.0132",
             "side": "buy", "ts": int(time.time() * 1000), "trade_id": f"smoke-{uuid.uuid4()}"}
    start = kafka.end_offsets("trades")
    t0 = time.monotonic()
    partition, offset = kafka.produce("trades", "KRW-BTC", trade,
                                      headers={"event-type": "trade"})
    assert offset >= start[partition]

    def found(records):
        return any(json.loads(m.value()).get("trade_id") == trade["trade_id"] for m in records)

    records = kafka.read("trades", start=start, want=found, timeout=20)
    took = time.monotonic() - t0
    mine = [m for m in records if json.loads(m.value()).get("trade_id") == trade["trade_id"]]
    assert len(mine) == 1, f"record not read back within 20 s (read {len(records)} records)"
    m = mine[0]
    assert m.key() == b"KRW-BTC"
    assert json.loads(m.value()) == trade
    assert dict(m.headers() or []) == {"event-type": b"trade"}
    assert (m.partition(), m.offset()) == (partition, offset)
    print(f"produce + read back took {took:.2f} s; cluster started in "
          f"{getattr(kafka, 'start_seconds', float('nan')):.1f} s")


def test_script_produce_and_consume_helpers(kafka):
    text = f"helper-{uuid.uuid4()}"
    import subprocess
    from kafka_support import SCRIPT
    value = json.dumps({"id": "1", "market": "KRW-ETH", "user": "u", "text": text, "ts": 1})
    p = subprocess.run(["bash", str(SCRIPT), "produce", "chat", "KRW-ETH", value,
                        "header", "event-type=chat.send", "--dir", str(kafka.dir)],
                       capture_output=True, text=True, timeout=90)
    assert p.returncode == 0, p.stderr
    records = kafka.read("chat", want=lambda rs: any(text.encode() in m.value() for m in rs),
                         timeout=20)
    mine = [m for m in records if text.encode() in m.value()]
    assert len(mine) == 1
    assert mine[0].key() == b"KRW-ETH"
    assert dict(mine[0].headers() or []) == {"event-type": b"chat.send"}
    p = subprocess.run(["bash", str(SCRIPT), "consume", "chat", "--timeout-ms", "5000",
                        "--dir", str(kafka.dir)], capture_output=True, text=True, timeout=90)
    assert text in p.stdout
