//! Where consumed records enter the gateway: each record is routed to a publication, shown to
//! the chat service (which learns message owners from the chat stream), and published on the
//! hub (records read back at start only fill the history). Implements the bus's `RecordSink`, so the bus knows nothing of what happens here.

use crate::bus::{InboundRecord, RecordSink};
use crate::chat::Chat;
use crate::hub::Hub;
use crate::hub::direct::Permit;
use crate::hub::publication::{Encoded, Origin, Publication};
use crate::metrics::Metrics;
use crate::route::Router;
use std::sync::Arc;

pub struct Ingest {
    pub router: Router,
    pub hub: Arc<Hub>,
    pub chat: Arc<Chat>,
    pub metrics: Arc<Metrics>,
    /// `--direct-writes`: a fan-out may write copies to sockets itself.
    pub direct_writes: bool,
}

impl Ingest {
    /// The messages of `destination` among records read back from the log (newer than
    /// `cursor`), encoded with the cursor as of each; returns them with the cursor after them.
    pub fn read_back(
        &self,
        destination: &str,
        records: &[InboundRecord],
        cursor: &[Origin],
    ) -> (Vec<Arc<Encoded>>, Vec<Origin>) {
        let mut cursor = cursor.to_vec();
        let mut found: Vec<Publication> = records
            .iter()
            .filter_map(|r| self.router.publication(r).ok())
            .filter(|p| &*p.destination == destination)
            .collect();
        found.sort_by_key(|p| (p.timestamp_ms, p.origin.as_ref().map_or(0, |o| o.offset)));
        let mut out = Vec::with_capacity(found.len());
        for p in found {
            let Some(o) = &p.origin else { continue };
            match cursor
                .iter_mut()
                .find(|c| c.partition == o.partition && c.topic == o.topic)
            {
                Some(c) if c.offset >= o.offset => continue,
                Some(c) => c.offset = o.offset,
                None => cursor.push(o.clone()),
            }
            let text: Vec<String> = cursor.iter().map(Origin::message_id).collect();
            out.push(Arc::new(p.encode(Some(&text.join(",")))));
        }
        (out, cursor)
    }

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

    /// The Kafka consumer's thread fans its records out itself. While the gateway's workers
    /// are light and one is idle, it writes its share of the copies directly and leaves
    /// the rest to the sessions on the idle workers, as a session's SEND does. At 1,000
    /// deliveries/s a copy trailed its record's first by 0.46 ms at p50 with every copy
    /// queued, and by 0.35 ms with the consumer writing a third of them (medians of 7
    /// runs each, in turns; docs/cpu-per-delivery.md). On a loaded replica every copy is
    /// queued, as before: the sessions write them on every worker at once, where the
    /// consumer's one thread would write them in turn.
    fn record_from_own_thread(&self, record: &InboundRecord, source: &'static str) {
        let _permit = Permit::new(self.direct_writes && crate::runtime::spare_workers() > 0);
        self.ingest(record, source, true);
    }

    fn history(&self, record: &InboundRecord, source: &'static str) {
        self.ingest(record, source, false);
    }

    fn partition_start(&self, topic: &str, partition: i32, offset: i64) {
        self.hub.partition_start(topic, partition, offset);
    }
}
