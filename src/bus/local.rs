//! The in-process bus of the embedded default: a SEND is published at once, as if it had
//! made the round trip through a broker with a single partition per topic.

use super::{Bus, InboundRecord, OutboundRecord, RecordSink, SendFuture};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

pub struct LocalBus {
    sink: Arc<dyn RecordSink>,
    /// Next offset per topic (std Mutex: never held across an await).
    offsets: Mutex<HashMap<String, i64>>,
}

impl LocalBus {
    pub fn new(sink: Arc<dyn RecordSink>) -> LocalBus {
        LocalBus {
            sink,
            offsets: Mutex::new(HashMap::new()),
        }
    }
}

impl Bus for LocalBus {
    fn name(&self) -> &'static str {
        "local"
    }

    fn send(&self, record: OutboundRecord) -> SendFuture {
        let offset = {
            let mut offsets = self.offsets.lock().expect("offsets lock poisoned");
            let next = offsets.entry(record.topic.clone()).or_insert_with(|| {
                self.sink.partition_start(&record.topic, 0, 0);
                0
            });
            *next += 1;
            *next - 1
        };
        let inbound = InboundRecord {
            topic: record.topic,
            partition: 0,
            offset,
            key: Some(record.key.into()),
            headers: record.headers,
            value: record.value,
            timestamp_ms: crate::clock::now_ms(),
        };
        self.sink.record(&inbound, "local");
        Box::pin(async { Ok(()) })
    }

    fn ready(&self) -> bool {
        true
    }
}
