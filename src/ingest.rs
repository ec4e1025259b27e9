//! Where consumed records enter the gateway: each record is routed to a publication, shown to
//! the chat service (which learns message owners from the chat stream), and published on the
//! hub (records read back at start only fill the history). Implements the bus's `RecordSink`, so the bus knows nothing of what happens here.

use crate::bus::{InboundRecord, RecordSink};
use crate::chat::Chat;
use crate::hub::Hub;
use crate::metrics::Metrics;
use crate::route::Router;
use std::sync::Arc;

pub struct Ingest {
    pub router: Router,
    pub hub: Arc<Hub>,
    pub chat: Arc<Chat>,
    pub metrics: Arc<Metrics>,
}

impl Ingest {
    /// Routes and publishes one record; a record that cannot be routed is counted, logged
    /// and skipped.
    fn ingest(&self, record: &InboundRecord, source: &'static str, live: bool) {
        match self.router.publication(record) {
            Ok(publication) => {
                if live {
                    self.metrics
                        .publications_in
                        .with_label_values(&[source])
                        .inc();
                }
                self.chat.observe(record, &publication.event_type);
                self.hub.publish(&publication, live);
            }
            Err(reason) => {
                self.metrics
                    .records_skipped
                    .with_label_values(&[reason.label()])
                    .inc();
                tracing::warn!(
                    topic = %record.topic,
                    partition = record.partition,
                    offset = record.offset,
                    %reason,
                    "skipped record"
                );
            }
        }
    }
}

impl RecordSink for Ingest {
    fn record(&self, record: &InboundRecord, source: &'static str) {
        self.ingest(record, source, true);
    }

    fn history(&self, record: &InboundRecord, source: &'static str) {
        self.ingest(record, source, false);
    }

    fn partition_start(&self, topic: &str, partition: i32, offset: i64) {
        self.hub.partition_start(topic, partition, offset);
    }
}
