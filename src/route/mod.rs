//! A route's worker: maps each batch of its upstream events through every mapping's mapper and
//! publishes the outputs to the bus, numbering each client stream consecutively.
//!
//! Mappers are pure compute, so each route runs on its own thread with warm instances; the order
//! of events within a route is the order of their outputs on every stream.
//!
//! A route's mappings are swapped between two batches ([`RouteUpdate`]): the batch before the
//! swap is mapped entirely by the old mappers and the next entirely by the new ones, and every
//! stream's sequence numbers continue across the swap, so clients see neither a gap nor a
//! repeat. When the worker stops it hands its streams' next sequence numbers back, so a route
//! restarted for a config change continues them too.

mod dedup;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use bytes::Bytes;
use tokio::runtime::Handle;

use crate::bus::{self, Bus, BusMessage, Origin};
use crate::config::{Auth, DatasourceKind, Mapping, StreamSpec, Template};
use crate::mapper::bindings::{self, Output};
use crate::mapper::{EventOutcome, MapperInstance};
use crate::metrics::Metrics;
use crate::position::Partition;
use crate::source::{RouteInbox, UpstreamEvent};
use crate::util::{now_us, LogLimit};

/// Queued batches merged into one mapper call at most.
const MAX_MERGED_BATCHES: usize = 64;

/// Where one client stream's messages go, and its next sequence number.
struct StreamTarget {
    stream: Arc<str>,
    subject: Arc<str>,
    next_seq: u64,
    /// A private stream: each output goes to its user's subject, and must name its user.
    private: bool,
    /// The origin of the last message another node published on this stream before this one
    /// took it over: outputs of the same feed up to it were published already (a source that
    /// resumes from a committed position redelivers them) and are not numbered again.
    published_through: Option<Origin>,
}

/// Where a stream taken over from another publisher continues: the last message of it the
/// cluster captured ([`Bus::last_captured`]).
#[derive(Debug, Clone, Default)]
pub struct Continued {
    /// The sequence number the stream continues from.
    pub next_seq: u64,
    /// The origin of that last message, when it had one.
    pub after: Option<Origin>,
}

/// Next sequence number per client stream.
pub type Sequences = HashMap<Arc<str>, u64>;

/// New mappings (and the streams they may publish to) for a running route.
pub struct RouteUpdate {
    /// The mappings, replacing all the current ones; `None` keeps them.
    pub mappings: Option<Vec<MappingWorker>>,
    /// Every declared stream.
    pub streams: Arc<BTreeMap<Arc<str>, StreamSpec>>,
    /// Called on the route's thread once the swap is in effect (for logs and metrics).
    pub applied: Box<dyn FnOnce() + Send>,
}

/// One mapping of a route, with its warm mapper.
pub struct MappingWorker {
    instance: MapperInstance,
    targets: OutputTargets,
    /// Names this mapping in origin feeds: its ws topic template.
    feed_name: Box<str>,
    /// The origin feed of each upstream partition this mapping has mapped.
    feeds: HashMap<Partition, Arc<str>>,
}

impl MappingWorker {
    /// A worker for `mapping`, running `instance`.
    pub fn new(mapping: &Mapping, instance: MapperInstance) -> Result<Self, String> {
        Ok(MappingWorker {
            instance,
            targets: OutputTargets::new(mapping)?,
            feed_name: mapping.ws_topic.as_str().into(),
            feeds: HashMap::new(),
        })
    }

    /// The mapper this mapping runs.
    pub fn instance(&self) -> &MapperInstance {
        &self.instance
    }

    /// The origin feed of this mapping of route `route` over `partition` of `source`.
    fn feed(&mut self, source: &str, route: &str, partition: &Partition) -> Arc<str> {
        if let Some(feed) = self.feeds.get(partition) {
            return Arc::clone(feed);
        }
        let mapping = format!("{route}:{}", self.feed_name);
        let feed = Origin::feed(source, partition, &mapping);
        self.feeds.insert(partition.clone(), Arc::clone(&feed));
        feed
    }

    /// Moves every stream's next sequence number into `into`.
    fn sequences_into(&self, into: &mut Sequences) {
        self.targets.sequences_into(into);
    }
}

/// Where a mapping's outputs are published: the check every mapper output passes before it goes
/// on the bus. The output's topic vars must render a stream the config declares; a private
/// stream's output must name a valid user and goes to that user's subject.
#[doc(hidden)]
pub struct OutputTargets {
    ws_topic: Template,
    fanout_topic: Template,
    targets: HashMap<Box<str>, StreamTarget>,
    scratch: String,
}

/// Where one output is published, and its number on its stream.
#[doc(hidden)]
#[derive(Debug)]
pub struct Placed {
    /// The client stream.
    pub stream: Arc<str>,
    /// The bus subject (for a private stream, the user's).
    pub subject: Arc<str>,
    /// The output's sequence number on its stream.
    pub seq: u64,
    /// The user a private output belongs to.
    pub user_id: Option<Arc<str>>,
}

/// Why an output is dropped.
#[doc(hidden)]
#[derive(Debug, PartialEq, Eq)]
pub enum Misplaced {
    /// A topic var is missing, or the stream is not declared (metric label `bad_output`).
    BadOutput(String),
    /// A private stream's output without a valid user id (metric label `no_user_id`).
    NoUserId,
    /// An output another node already published before this one took the stream over
    /// (metric label `duplicate`).
    Published,
}

impl OutputTargets {
    /// The targets of `mapping`'s outputs.
    pub fn new(mapping: &Mapping) -> Result<Self, String> {
        let parse = |t: &str| Template::parse(t).map_err(|e| format!("`{t}`: {e}"));
        Ok(OutputTargets {
            ws_topic: parse(&mapping.ws_topic)?,
            fanout_topic: parse(&mapping.fanout_topic)?,
            targets: HashMap::new(),
            scratch: String::new(),
        })
    }

    /// Moves every stream's next sequence number into `into`.
    fn sequences_into(&self, into: &mut Sequences) {
        for target in self.targets.values() {
            into.insert(Arc::clone(&target.stream), target.next_seq);
        }
    }

    /// Where `output` is published among the declared `streams`, numbered next on its stream;
    /// a stream seen for the first time continues from `sequences`, else from 1.
    pub fn place(
        &mut self,
        output: &Output,
        streams: &BTreeMap<Arc<str>, StreamSpec>,
        sequences: &Sequences,
    ) -> Result<Placed, Misplaced> {
        self.place_continuing(output, None, streams, sequences, &mut |_, _| None)
    }

    /// Like [`place`](Self::place), for an output of upstream `origin`; a stream seen for the
    /// first time asks `first_seen` (with its name and subject) where another publisher left
    /// it, and continues after that when it is further than `sequences`. An output of a feed
    /// that publisher already published through is [`Misplaced::Published`].
    pub fn place_continuing(
        &mut self,
        output: &Output,
        origin: Option<&Origin>,
        streams: &BTreeMap<Arc<str>, StreamSpec>,
        sequences: &Sequences,
        first_seen: &mut dyn FnMut(&Arc<str>, &str) -> Option<Continued>,
    ) -> Result<Placed, Misplaced> {
        let target = self
            .target(output, streams, sequences, first_seen)
            .map_err(Misplaced::BadOutput)?;
        if let (Some(through), Some(origin)) = (&target.published_through, origin) {
            if through.feed == origin.feed {
                if origin.order <= through.order {
                    return Err(Misplaced::Published);
                }
                target.published_through = None;
            }
        }
        // A private output goes to its user's subject; one without a user goes to nobody (never
        // to everyone). A public output's user id means nothing.
        let (subject, user_id) = match (target.private, &output.user_id) {
            (false, _) => (Arc::clone(&target.subject), None),
            (true, Some(user)) if bus::is_user_id(user) => (
                Arc::from(bus::user_subject(&target.subject, user)),
                Some(Arc::from(user.as_str())),
            ),
            (true, _) => return Err(Misplaced::NoUserId),
        };
        let seq = target.next_seq;
        target.next_seq += 1;
        Ok(Placed {
            stream: Arc::clone(&target.stream),
            subject,
            seq,
            user_id,
        })
    }

    /// The stream an output belongs to, if the config declares it. A stream seen for the first
    /// time continues from `sequences` (numbers handed over by an earlier mapper), else from 1.
    fn target(
        &mut self,
        output: &Output,
        streams: &BTreeMap<Arc<str>, StreamSpec>,
        sequences: &Sequences,
        first_seen: &mut dyn FnMut(&Arc<str>, &str) -> Option<Continued>,
    ) -> Result<&mut StreamTarget, String> {
        let lookup = |name: &str| {
            output
                .topic_vars
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.as_str())
        };
        self.scratch.clear();
        self.ws_topic
            .render_into(&mut self.scratch, lookup)
            .map_err(|missing| format!("output lacks topic var `{missing}`"))?;
        if !self.targets.contains_key(self.scratch.as_str()) {
            let (stream, spec) = streams
                .get_key_value(self.scratch.as_str())
                .ok_or_else(|| format!("stream `{}` is not declared in topics", self.scratch))?;
            let subject = self
                .fanout_topic
                .render(lookup)
                .map_err(|missing| format!("output lacks topic var `{missing}`"))?;
            let private = spec.auth == Auth::Private;
            let handed = sequences.get(stream).copied().unwrap_or(1);
            let continued = (!private)
                .then(|| first_seen(stream, &subject))
                .flatten()
                .filter(|c| c.next_seq >= handed);
            let target = StreamTarget {
                stream: Arc::clone(stream),
                subject: Arc::from(subject),
                next_seq: continued.as_ref().map_or(handed, |c| c.next_seq),
                private,
                published_through: continued.and_then(|c| c.after),
            };
            self.targets
                .insert(self.scratch.clone().into_boxed_str(), target);
        }
        Ok(self
            .targets
            .get_mut(self.scratch.as_str())
            .expect("inserted above"))
    }
}

/// Identity of the datasource a route reads, as mappers see it.
#[derive(Clone)]
pub struct SourceIdentity {
    /// Datasource name.
    pub name: String,
    /// Datasource kind.
    pub kind: DatasourceKind,
}

/// A route's worker thread state.
pub struct RouteWorker {
    /// Route id, for logs.
    pub route_id: String,
    /// Datasource of the route.
    pub source: SourceIdentity,
    /// One worker per mapping.
    pub mappings: Vec<MappingWorker>,
    /// Every declared stream.
    pub streams: Arc<BTreeMap<Arc<str>, StreamSpec>>,
    /// Where outputs are published.
    pub bus: Arc<dyn Bus>,
    /// Node metrics.
    pub metrics: Arc<Metrics>,
    /// Next sequence numbers of streams this route published to before (a restarted route).
    pub sequences: Sequences,
    /// Bounds the warnings about dropped events.
    pub poison_log: LogLimit,
}

impl RouteWorker {
    /// Starts the worker on its own thread; it stops when its inbox closes and returns its
    /// streams' next sequence numbers. Updates sent to `updates` take effect between batches.
    pub fn spawn(
        self,
        inbox: RouteInbox,
        updates: std::sync::mpsc::Receiver<RouteUpdate>,
        runtime: Handle,
    ) -> std::thread::JoinHandle<Sequences> {
        std::thread::Builder::new()
            .name(format!("route-{}", self.route_id))
            .spawn(move || self.run(inbox, updates, runtime))
            .expect("spawning a route thread")
    }

    fn run(
        mut self,
        mut inbox: RouteInbox,
        updates: std::sync::mpsc::Receiver<RouteUpdate>,
        runtime: Handle,
    ) -> Sequences {
        let mut batches = Vec::new();
        let mut mapped = dedup::Mapped::default();
        // Streams whose numbering this worker checked against the capture: once each in its
        // life (mapper swaps hand their numbers on, and nobody else publishes meanwhile).
        let mut checked: HashSet<Arc<str>> = HashSet::new();
        let duplicates = self
            .metrics
            .messages_dropped
            .with_label_values(&["duplicate"]);
        let counters = SourceCounters {
            mapped: self
                .metrics
                .source_mapped
                .with_label_values(&[&self.source.name]),
            errors: self
                .metrics
                .source_errors
                .with_label_values(&[&self.source.name]),
        };
        // Whatever queued up while the last batch was mapped goes into one mapper call.
        while inbox.blocking_recv_many(&mut batches, MAX_MERGED_BATCHES) > 0 {
            while let Ok(update) = updates.try_recv() {
                self.swap(update);
            }
            let queued = batches.iter().map(|b| b.len()).sum::<usize>();
            let events: Vec<(&UpstreamEvent, dedup::Place)> = batches
                .iter()
                .flat_map(|b| b.iter())
                .filter_map(|event| mapped.admit(event).map(|place| (event, place)))
                .collect();
            duplicates.inc_by((queued - events.len()) as u64);
            let messages = self.map(&events, &counters, &runtime, &mut checked);
            drop(events);
            let published =
                messages.is_empty() || runtime.block_on(self.bus.publish(messages)).is_ok();
            // Dropping the batches only now hands them off: their outputs are on the bus.
            batches.clear();
            if !published {
                tracing::warn!(route = %self.route_id, "bus closed; route worker stops");
                break;
            }
        }
        self.sequences()
    }

    /// Every stream's next sequence number.
    fn sequences(&self) -> Sequences {
        let mut sequences = self.sequences.clone();
        for mapping in &self.mappings {
            mapping.sequences_into(&mut sequences);
        }
        sequences
    }

    /// Replaces the mappings between two batches, continuing every stream's numbering.
    fn swap(&mut self, update: RouteUpdate) {
        if let Some(mappings) = update.mappings {
            self.sequences = self.sequences();
            self.mappings = mappings;
        }
        self.streams = update.streams;
        (update.applied)();
    }

    /// Maps events through every mapping; returns what to publish, in order.
    fn map(
        &mut self,
        batch: &[(&UpstreamEvent, dedup::Place)],
        counters: &SourceCounters,
        runtime: &Handle,
        checked: &mut HashSet<Arc<str>>,
    ) -> Vec<(Arc<str>, BusMessage)> {
        let bus = &self.bus;
        // A stream this worker has not published yet may have been published by another node
        // (the datasource moved here): its numbering continues from the capture.
        let mut first_seen = |stream: &Arc<str>, subject: &str| {
            if !checked.insert(Arc::clone(stream)) {
                return None;
            }
            let last = runtime.block_on(bus.last_captured(subject, stream))?;
            tracing::debug!(%stream, seq = last.seq, "stream numbering continues from the capture");
            Some(Continued {
                next_seq: last.seq + 1,
                after: last.origin,
            })
        };
        let events: Vec<bindings::Event> =
            batch.iter().map(|(e, _)| to_wit(e, &self.source)).collect();
        let mut messages = Vec::new();
        for mapping in &mut self.mappings {
            let outcomes = mapping.instance.map_batch(&events);
            for ((event, place), outcome) in batch.iter().zip(outcomes) {
                let outputs = match outcome {
                    EventOutcome::Mapped(outputs) => {
                        counters.mapped.inc();
                        outputs
                    }
                    EventOutcome::Failed(failure) => {
                        counters.errors.inc();
                        // A poison event is skipped (it never blocks its partition), counted by
                        // the mapper, and logged with where it sits upstream.
                        if self.poison_log.allow() {
                            tracing::warn!(
                                route = %self.route_id,
                                mapper = mapping.instance.label(),
                                channel = %event.channel,
                                position = %event.position,
                                kind = failure.kind(),
                                ?failure,
                                "event dropped by its mapper"
                            );
                        }
                        continue;
                    }
                };
                // Outputs of events whose position survives a consumer restart carry their
                // origin, so the hubs drop them if the event is redelivered.
                let feed = place.as_ref().map(|(partition, order)| {
                    (
                        mapping.feed(&self.source.name, &self.route_id, partition),
                        *order,
                    )
                });
                for (index, output) in outputs.into_iter().enumerate() {
                    let origin = feed.as_ref().map(|(feed, order)| Origin {
                        feed: Arc::clone(feed),
                        order: order.output(index as u32),
                    });
                    let placed = match mapping.targets.place_continuing(
                        &output,
                        origin.as_ref(),
                        &self.streams,
                        &self.sequences,
                        &mut first_seen,
                    ) {
                        Ok(placed) => placed,
                        Err(Misplaced::Published) => {
                            self.metrics
                                .messages_dropped
                                .with_label_values(&["duplicate"])
                                .inc();
                            continue;
                        }
                        Err(Misplaced::BadOutput(why)) => {
                            counters.errors.inc();
                            self.metrics
                                .mapper_errors
                                .with_label_values(&[mapping.instance.label(), "bad_output"])
                                .inc();
                            tracing::debug!(mapper = mapping.instance.label(), %why, "output dropped");
                            continue;
                        }
                        Err(Misplaced::NoUserId) => {
                            counters.errors.inc();
                            let label = mapping.instance.label();
                            self.metrics
                                .mapper_errors
                                .with_label_values(&[label, "no_user_id"])
                                .inc();
                            tracing::debug!(
                                mapper = label,
                                user = ?output.user_id,
                                "private output without a valid user id dropped"
                            );
                            continue;
                        }
                    };
                    let message = BusMessage {
                        stream: placed.stream,
                        seq: placed.seq,
                        event_time_us: event.timestamp_us,
                        published_us: 0,
                        payload: Bytes::from(output.payload),
                        user_id: placed.user_id,
                        origin,
                    };
                    messages.push((placed.subject, message));
                }
            }
        }
        let published_us = now_us();
        for (_, message) in &mut messages {
            message.published_us = published_us;
        }
        if let Some(oldest) = batch
            .iter()
            .map(|(e, _)| e.timestamp_us)
            .filter(|t| *t > 0)
            .min()
        {
            let lag = (published_us - oldest).max(0) as f64 / 1e6;
            self.metrics.publish_lag.observe(lag);
        }
        messages
    }
}

/// Per-datasource counts of what its routes' mappings made of its events.
struct SourceCounters {
    /// Events a mapping mapped.
    mapped: prometheus::IntCounter,
    /// Events (or outputs) a mapping dropped: a mapper failure or an output for no stream.
    errors: prometheus::IntCounter,
}

fn to_wit(event: &UpstreamEvent, source: &SourceIdentity) -> bindings::Event {
    bindings::Event {
        source: source.name.clone(),
        kind: match source.kind {
            DatasourceKind::Demo => bindings::SourceKind::Demo,
            DatasourceKind::Kafka => bindings::SourceKind::Kafka,
            DatasourceKind::Nats => bindings::SourceKind::Nats,
            DatasourceKind::RedisStream => bindings::SourceKind::RedisStream,
        },
        channel: event.channel.to_string(),
        key: event.key.as_ref().map(|k| k.to_vec()),
        headers: event
            .headers
            .iter()
            .map(|(key, value)| bindings::Header {
                key: key.clone(),
                value: value.to_vec(),
            })
            .collect(),
        payload: event.payload.to_vec(),
        timestamp_us: event.timestamp_us,
        position: event.position.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Overflow, StreamSpec};
    use crate::position::Order;

    fn streams() -> BTreeMap<Arc<str>, StreamSpec> {
        let spec = StreamSpec {
            topic_index: 0,
            auth: Auth::Public,
            rate: None,
            burst: None,
            overflow: Overflow::default_for("btcusdt@trade"),
        };
        BTreeMap::from([(Arc::from("btcusdt@trade"), spec)])
    }

    /// The targets of a mapping to `{symbol}@trade` on `md.{symbol}.trade`.
    fn trade_targets() -> OutputTargets {
        let mapping = Mapping {
            mapper: "m".into(),
            fanout_topic: "md.{symbol}.trade".into(),
            ws_topic: "{symbol}@trade".into(),
            params: BTreeMap::new(),
        };
        OutputTargets::new(&mapping).unwrap()
    }

    fn output() -> Output {
        Output {
            topic_vars: vec![("symbol".into(), "btcusdt".into())],
            user_id: None,
            payload: "{}".into(),
        }
    }

    fn origin(offset: u64) -> Origin {
        Origin {
            feed: Arc::from("src//0/r:{symbol}@trade"),
            order: Order {
                major: offset,
                minor: 0,
                output: 0,
            },
        }
    }

    #[test]
    fn a_stream_taken_over_continues_its_numbering_and_skips_what_was_published() {
        let mut targets = trade_targets();
        let (streams, sequences) = (streams(), Sequences::new());
        let mut asked = Vec::new();
        let mut first_seen = |stream: &Arc<str>, subject: &str| {
            asked.push(format!("{stream} {subject}"));
            Some(Continued {
                next_seq: 101,
                after: Some(origin(50)),
            })
        };
        // The source redelivers offsets 49 and 50: the other node published them already.
        for offset in [49, 50] {
            let placed = targets.place_continuing(
                &output(),
                Some(&origin(offset)),
                &streams,
                &sequences,
                &mut first_seen,
            );
            assert!(matches!(placed, Err(Misplaced::Published)), "{offset}");
        }
        for (offset, seq) in [(51, 101), (52, 102)] {
            let placed = targets
                .place_continuing(
                    &output(),
                    Some(&origin(offset)),
                    &streams,
                    &sequences,
                    &mut first_seen,
                )
                .unwrap();
            assert_eq!(placed.seq, seq);
        }
        assert_eq!(asked, ["btcusdt@trade md.btcusdt.trade"], "looked up once");
    }

    #[test]
    fn numbers_handed_over_win_over_an_older_capture() {
        let mut targets = trade_targets();
        let sequences = Sequences::from([(Arc::from("btcusdt@trade"), 500)]);
        let placed = targets
            .place_continuing(&output(), None, &streams(), &sequences, &mut |_, _| {
                Some(Continued {
                    next_seq: 300,
                    after: None,
                })
            })
            .unwrap();
        assert_eq!(placed.seq, 500);
    }
}
