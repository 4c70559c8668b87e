//! The `nats` datasource: core NATS subscriptions shared through a queue group, or a JetStream
//! durable pull consumer acknowledged only after hand-off (at-least-once).
//!
//! Properties:
//! - `servers` (required): `nats://host:port` (or `tls://`), a string or an array of them.
//! - `subjects` (required): non-empty array of subjects to consume, wildcards allowed.
//! - `queue_group`: core mode's queue group (default `wsgate`), so several gateways share a
//!   subject instead of each receiving every message.
//! - `jetstream`: switches to JetStream: `{stream (required), durable (default "wsgate"),
//!   deliver ("all" | "new", default "all"), ack_wait_ms (default 30000)}`.
//! - `max_reconnect_attempts` (default unlimited), `reconnect_time_wait_ms` (default 1000; the
//!   delay grows exponentially from it, capped at 30 s, with jitter).
//! - Credentials: `user` + `password`, or `token`, or `creds_file`.
//!
//! Core NATS is at-most-once: what is published while the gateway is disconnected is not
//! seen. JetStream messages are acknowledged once every route has published their mapped
//! outputs to the bus, so a crash redelivers whatever was not handed off.

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream;
use async_nats::jetstream::consumer::{pull, AckPolicy, DeliverPolicy};
use async_nats::{ConnectOptions, Event, HeaderMap, ServerAddr};
use bytes::Bytes;
use futures_util::{FutureExt, StreamExt};
use rand::Rng;
use serde_json::{Map, Value};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::{Backpressure, Dispatcher, Source, SourceError, SourceHealth, UpstreamEvent};
use crate::config::Datasource;
use crate::util::now_us;

/// Most messages handed to the dispatcher at once.
const MAX_BATCH: usize = 500;
/// Longest wait between two attempts to (re)establish a session.
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// Properties this source understands.
const KNOWN: &[&str] = &[
    "servers",
    "subjects",
    "queue_group",
    "jetstream",
    "max_reconnect_attempts",
    "reconnect_time_wait_ms",
    "user",
    "password",
    "token",
    "creds_file",
];

/// How the source authenticates.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Credentials {
    None,
    UserPassword(String, String),
    Token(String),
    CredsFile(String),
}

/// Where `deliver` starts a new durable consumer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Deliver {
    All,
    New,
}

/// JetStream settings.
#[derive(Debug, Clone, PartialEq, Eq)]
struct JetStreamSettings {
    stream: String,
    durable: String,
    deliver: Deliver,
    ack_wait: Duration,
}

/// A NATS datasource.
#[derive(Debug)]
pub struct NatsSource {
    name: String,
    servers: Vec<ServerAddr>,
    subjects: Vec<String>,
    queue_group: String,
    jetstream: Option<JetStreamSettings>,
    max_reconnect_attempts: Option<usize>,
    reconnect_time_wait: Duration,
    credentials: Credentials,
}

/// Why a session ended.
enum Ended {
    /// Shutdown was requested, or every route is gone.
    Stopped,
    /// The upstream failed; try again after a pause.
    Failed(String),
}

impl NatsSource {
    /// Validates the datasource's properties; errors name the offending property.
    pub fn from_datasource(datasource: &Datasource) -> Result<Self, SourceError> {
        parse(&datasource.properties)
            .map_err(|message| SourceError::Config {
                name: datasource.name.clone(),
                message,
            })
            .map(|mut source| {
                source.name = datasource.name.clone();
                source
            })
    }

    /// Whether this source consumes through JetStream.
    pub fn is_jetstream(&self) -> bool {
        self.jetstream.is_some()
    }

    async fn connect(
        &self,
        link: mpsc::UnboundedSender<Link>,
    ) -> Result<async_nats::Client, String> {
        let name = self.name.clone();
        let base = self.reconnect_time_wait;
        let mut options = match &self.credentials {
            Credentials::None => ConnectOptions::new(),
            Credentials::UserPassword(user, password) => {
                ConnectOptions::with_user_and_password(user.clone(), password.clone())
            }
            Credentials::Token(token) => ConnectOptions::with_token(token.clone()),
            Credentials::CredsFile(path) => ConnectOptions::with_credentials_file(path)
                .await
                .map_err(|e| format!("properties.creds_file: {e}"))?,
        };
        options = options
            .name(format!("wsgate/{}", self.name))
            .retry_on_initial_connect()
            .max_reconnects(self.max_reconnect_attempts)
            .reconnect_delay_callback(move |attempts| backoff(base, attempts))
            .event_callback(move |event| {
                match &event {
                    Event::Connected => drop(link.send(Link::Up)),
                    Event::Disconnected => drop(link.send(Link::Down("nats disconnected"))),
                    _ => {}
                }
                let name = name.clone();
                async move { log_event(&name, event) }
            });
        options
            .connect(self.servers.clone())
            .await
            .map_err(|e| format!("connecting: {e}"))
    }

    async fn serve(self, dispatcher: Dispatcher, shutdown: CancellationToken) {
        let (link_tx, link_rx) = mpsc::unbounded_channel();
        let mut feed = Feed {
            dispatcher: Some(dispatcher),
            link: link_rx,
        };
        // Ack handles of handed-off JetStream batches, in hand-off order.
        let (acks_tx, mut acks_rx) = mpsc::unbounded_channel::<Vec<jetstream::message::Acker>>();
        let mut failures: usize = 0;
        let mut position: u64 = 0;
        loop {
            if shutdown.is_cancelled() {
                break;
            }
            let ended = match self.connect(link_tx.clone()).await {
                Err(e) => Ended::Failed(e),
                Ok(client) => {
                    let ended = match &self.jetstream {
                        None => {
                            self.consume_core(&client, &mut feed, &shutdown, &mut position)
                                .await
                        }
                        Some(settings) => {
                            self.consume_jetstream(
                                settings,
                                &client,
                                &mut feed,
                                &shutdown,
                                &acks_tx,
                                &mut acks_rx,
                                &mut failures,
                            )
                            .await
                        }
                    };
                    ack_ready(&mut acks_rx).await;
                    let _ = client.flush().await;
                    ended
                }
            };
            match ended {
                Ended::Stopped => break,
                Ended::Failed(reason) => {
                    failures += 1;
                    feed.health().set_down(&reason);
                    feed.health().reconnecting();
                    let pause = backoff(self.reconnect_time_wait, failures);
                    tracing::warn!(
                        datasource = %self.name,
                        %reason,
                        retry_in_ms = pause.as_millis() as u64,
                        "nats source session failed"
                    );
                    tokio::select! {
                        _ = shutdown.cancelled() => break,
                        _ = tokio::time::sleep(pause) => {}
                    }
                    // Link changes of the failed session's client no longer matter.
                    while feed.link.try_recv().is_ok() {}
                }
            }
        }
        ack_ready(&mut acks_rx).await;
        tracing::info!(datasource = %self.name, "nats source stopped");
    }

    async fn consume_core(
        &self,
        client: &async_nats::Client,
        feed: &mut Feed,
        shutdown: &CancellationToken,
        position: &mut u64,
    ) -> Ended {
        let mut subscriptions = Vec::with_capacity(self.subjects.len());
        for subject in &self.subjects {
            match client
                .queue_subscribe(subject.clone(), self.queue_group.clone())
                .await
            {
                Ok(subscriber) => subscriptions.push(subscriber),
                Err(e) => return Ended::Failed(format!("subscribing to `{subject}`: {e}")),
            }
        }
        tracing::info!(
            datasource = %self.name,
            subjects = ?self.subjects,
            queue_group = %self.queue_group,
            "nats core subscriptions open"
        );
        feed.health().set_up();
        let mut messages = futures_util::stream::select_all(subscriptions);
        loop {
            let first = tokio::select! {
                biased;
                _ = shutdown.cancelled() => return Ended::Stopped,
                Some(link) = feed.link.recv() => {
                    feed.note(link);
                    continue;
                }
                message = messages.next() => message,
            };
            let Some(first) = first else {
                return Ended::Failed("connection closed".to_string());
            };
            let mut batch = Vec::with_capacity(16);
            let now = now_us();
            let mut push = |message: async_nats::Message| {
                *position += 1;
                batch.push(to_event(message, position.to_string(), now));
            };
            push(first);
            for _ in 1..MAX_BATCH {
                match messages.next().now_or_never() {
                    Some(Some(message)) => push(message),
                    _ => break,
                }
            }
            if !feed.dispatch(batch, || {}).await {
                return Ended::Stopped;
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    async fn consume_jetstream(
        &self,
        settings: &JetStreamSettings,
        client: &async_nats::Client,
        feed: &mut Feed,
        shutdown: &CancellationToken,
        acks_tx: &mpsc::UnboundedSender<Vec<jetstream::message::Acker>>,
        acks_rx: &mut mpsc::UnboundedReceiver<Vec<jetstream::message::Acker>>,
        failures: &mut usize,
    ) -> Ended {
        let context = jetstream::new(client.clone());
        let stream = tokio::select! {
            _ = shutdown.cancelled() => return Ended::Stopped,
            stream = context.get_stream(&settings.stream) => match stream {
                Ok(stream) => stream,
                Err(e) => return Ended::Failed(format!("stream `{}`: {e}", settings.stream)),
            },
        };
        let mut config = pull::Config {
            durable_name: Some(settings.durable.clone()),
            deliver_policy: match settings.deliver {
                Deliver::All => DeliverPolicy::All,
                Deliver::New => DeliverPolicy::New,
            },
            ack_policy: AckPolicy::Explicit,
            ack_wait: settings.ack_wait,
            ..Default::default()
        };
        // One subject goes in `filter_subject`, which every JetStream server understands;
        // several need `filter_subjects` (nats-server 2.10+).
        if let [one] = self.subjects.as_slice() {
            config.filter_subject = one.clone();
        } else {
            config.filter_subjects = self.subjects.clone();
        }
        let mut consumer: jetstream::consumer::PullConsumer = tokio::select! {
            _ = shutdown.cancelled() => return Ended::Stopped,
            consumer = stream.get_or_create_consumer(&settings.durable, config.clone()) => {
                match consumer {
                    Ok(consumer) => consumer,
                    Err(e) => {
                        return Ended::Failed(format!("consumer `{}`: {e}", settings.durable))
                    }
                }
            }
        };
        // Deliveries still awaiting an ack belong to a session that is gone (a crashed
        // gateway, a lost connection). JetStream would redeliver them only after `ack_wait`,
        // behind newer messages: rewind the consumer to its ack floor instead, so the stream
        // resumes in order from the first message not handed off.
        let info = match consumer.info().await {
            Ok(info) => info.clone(),
            Err(e) => return Ended::Failed(format!("consumer `{}` info: {e}", settings.durable)),
        };
        let floor = info.ack_floor.stream_sequence;
        if info.num_ack_pending > 0 && (floor > 0 || settings.deliver == Deliver::All) {
            tracing::info!(
                datasource = %self.name,
                durable = %settings.durable,
                unacked = info.num_ack_pending,
                resume_at = floor + 1,
                "rewinding durable consumer to its ack floor"
            );
            if let Err(e) = stream.delete_consumer(&settings.durable).await {
                return Ended::Failed(format!("rewinding `{}`: {e}", settings.durable));
            }
            config.deliver_policy = DeliverPolicy::ByStartSequence {
                start_sequence: floor + 1,
            };
            consumer = match stream.create_consumer(config).await {
                Ok(consumer) => consumer,
                Err(e) => return Ended::Failed(format!("recreating `{}`: {e}", settings.durable)),
            };
        }
        let messages = consumer
            .stream()
            .max_messages_per_batch(MAX_BATCH)
            .heartbeat(Duration::from_secs(5))
            .expires(Duration::from_secs(30))
            .messages()
            .await;
        let mut messages = match messages {
            Ok(messages) => messages,
            Err(e) => return Ended::Failed(format!("pulling from `{}`: {e}", settings.durable)),
        };
        tracing::info!(
            datasource = %self.name,
            stream = %settings.stream,
            durable = %settings.durable,
            subjects = ?self.subjects,
            "nats jetstream consumer open"
        );
        *failures = 0;
        feed.health().set_up();
        let mut lag_tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            let first = tokio::select! {
                biased;
                _ = shutdown.cancelled() => return Ended::Stopped,
                Some(ackers) = acks_rx.recv() => {
                    ack_all(ackers).await;
                    continue;
                }
                _ = lag_tick.tick() => {
                    // Not yet delivered plus delivered and not yet acknowledged.
                    if let Ok(info) = consumer.get_info().await {
                        feed.health().set_lag(info.num_pending + info.num_ack_pending as u64);
                    }
                    continue;
                }
                Some(link) = feed.link.recv() => {
                    feed.note(link);
                    continue;
                }
                message = messages.next() => message,
            };
            let first = match first {
                Some(Ok(message)) => message,
                Some(Err(e)) => return Ended::Failed(format!("pulling: {e}")),
                None => return Ended::Failed("consumer stream ended".to_string()),
            };
            let mut batch = Vec::with_capacity(16);
            let mut ackers = Vec::with_capacity(16);
            let mut push = |message: jetstream::Message| {
                let (position, timestamp_us) = match message.info() {
                    Ok(info) => (
                        info.stream_sequence.to_string(),
                        (info.published.unix_timestamp_nanos() / 1_000) as i64,
                    ),
                    Err(_) => (String::new(), now_us()),
                };
                let (message, acker) = message.split();
                ackers.push(acker);
                batch.push(to_event(message, position, timestamp_us));
            };
            push(first);
            for _ in 1..MAX_BATCH {
                match messages.next().now_or_never() {
                    Some(Some(Ok(message))) => push(message),
                    _ => break,
                }
            }
            let handed_off = acks_tx.clone();
            let alive = feed
                .dispatch(batch, move || {
                    // The loop acknowledges them; if it is gone, JetStream redelivers.
                    let _ = handed_off.send(ackers);
                })
                .await;
            if !alive {
                return Ended::Stopped;
            }
        }
    }
}

impl Source for NatsSource {
    /// A broker keeps what is not consumed: a slow route slows the source, nothing is dropped.
    fn backpressure(&self) -> Backpressure {
        Backpressure::Wait
    }

    fn durable_positions(&self) -> bool {
        self.is_jetstream()
    }

    fn run(self: Box<Self>, dispatcher: Dispatcher, shutdown: CancellationToken) {
        let runtime = match tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            Ok(runtime) => runtime,
            Err(e) => {
                tracing::error!(datasource = %self.name, error = %e, "cannot start nats runtime");
                return;
            }
        };
        runtime.block_on((*self).serve(dispatcher, shutdown));
    }
}

/// Owns the dispatcher; dispatches on the blocking pool so that the connection keeps being
/// served (pings, acks) while a route applies backpressure.
struct Feed {
    dispatcher: Option<Dispatcher>,
    /// Connection state changes reported by the client's event callback.
    link: mpsc::UnboundedReceiver<Link>,
}

/// A change of the connection's state.
enum Link {
    Up,
    Down(&'static str),
}

impl Feed {
    fn health(&self) -> &SourceHealth {
        self.dispatcher
            .as_ref()
            .expect("dispatcher present")
            .health()
    }

    fn note(&self, link: Link) {
        match link {
            Link::Up => self.health().set_up(),
            Link::Down(reason) => {
                self.health().set_down(reason);
                self.health().reconnecting();
            }
        }
    }

    async fn dispatch(
        &mut self,
        events: Vec<UpstreamEvent>,
        handed_off: impl FnOnce() + Send + 'static,
    ) -> bool {
        let mut dispatcher = self.dispatcher.take().expect("dispatcher present");
        let (dispatcher, alive) = tokio::task::spawn_blocking(move || {
            let alive = dispatcher.dispatch_blocking_then(events, handed_off);
            (dispatcher, alive)
        })
        .await
        .expect("dispatch does not panic");
        self.dispatcher = Some(dispatcher);
        alive
    }
}

/// Acknowledges every batch already handed off.
async fn ack_ready(acks: &mut mpsc::UnboundedReceiver<Vec<jetstream::message::Acker>>) {
    while let Ok(ackers) = acks.try_recv() {
        ack_all(ackers).await;
    }
}

async fn ack_all(ackers: Vec<jetstream::message::Acker>) {
    for acker in ackers {
        if let Err(e) = acker.ack().await {
            // Not acknowledged: JetStream redelivers it after `ack_wait`.
            tracing::debug!(error = %e, "jetstream ack failed");
        }
    }
}

fn to_event(message: async_nats::Message, position: String, timestamp_us: i64) -> UpstreamEvent {
    let (key, headers) = match &message.headers {
        Some(map) => (key_of(map), headers_of(map)),
        None => (None, Vec::new()),
    };
    UpstreamEvent {
        channel: Arc::from(message.subject.as_str()),
        key,
        headers,
        payload: message.payload,
        timestamp_us,
        position,
    }
}

fn key_of(headers: &HeaderMap) -> Option<Bytes> {
    headers
        .get("key")
        .or_else(|| headers.get("Nats-Msg-Id"))
        .map(|value| Bytes::copy_from_slice(value.as_str().as_bytes()))
}

fn headers_of(headers: &HeaderMap) -> Vec<(String, Bytes)> {
    let mut out: Vec<(String, Bytes)> = headers
        .iter()
        .flat_map(|(name, values)| {
            values.iter().map(move |value| {
                (
                    name.to_string(),
                    Bytes::copy_from_slice(value.as_str().as_bytes()),
                )
            })
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// `base * 2^(attempt-1)`, capped, with ±25 % jitter.
fn backoff(base: Duration, attempts: usize) -> Duration {
    let exponent = attempts.saturating_sub(1).min(16) as u32;
    let delay = base.saturating_mul(1u32 << exponent).min(MAX_BACKOFF);
    let jitter = rand::rng().random_range(0.75..1.25);
    delay.mul_f64(jitter).min(MAX_BACKOFF)
}

fn log_event(name: &str, event: Event) {
    match event {
        Event::Connected => tracing::info!(datasource = %name, "nats connected"),
        Event::Disconnected => tracing::warn!(datasource = %name, "nats disconnected"),
        Event::Closed => tracing::warn!(datasource = %name, "nats connection closed"),
        other => tracing::warn!(datasource = %name, event = %other, "nats connection event"),
    }
}

fn parse(properties: &Map<String, Value>) -> Result<NatsSource, String> {
    if let Some(unknown) = properties.keys().find(|k| !KNOWN.contains(&k.as_str())) {
        return Err(format!(
            "properties.{unknown}: unknown property (known: {})",
            KNOWN.join(", ")
        ));
    }
    let servers = parse_servers(properties.get("servers"))?;
    let subjects = parse_subjects(properties.get("subjects"))?;
    let queue_group = match properties.get("queue_group") {
        None => "wsgate".to_string(),
        Some(value) => {
            let group = non_empty_string(value, "properties.queue_group")?;
            if group.contains(|c: char| c.is_whitespace()) {
                return Err("properties.queue_group: must not contain whitespace".to_string());
            }
            group
        }
    };
    let jetstream = match properties.get("jetstream") {
        None | Some(Value::Null) => None,
        Some(value) => Some(parse_jetstream(value)?),
    };
    let max_reconnect_attempts = match properties.get("max_reconnect_attempts") {
        None | Some(Value::Null) => None,
        Some(value) => Some(
            value
                .as_u64()
                .ok_or("properties.max_reconnect_attempts: must be a non-negative integer")?
                as usize,
        ),
    };
    let reconnect_time_wait = match properties.get("reconnect_time_wait_ms") {
        None => Duration::from_millis(1000),
        Some(value) => match value.as_u64() {
            Some(ms) if ms > 0 => Duration::from_millis(ms),
            _ => {
                return Err(
                    "properties.reconnect_time_wait_ms: must be a positive integer (ms)"
                        .to_string(),
                )
            }
        },
    };
    let text = |key: &str| -> Result<Option<String>, String> {
        properties
            .get(key)
            .map(|v| non_empty_string(v, &format!("properties.{key}")))
            .transpose()
    };
    let (user, password, token, creds_file) = (
        text("user")?,
        text("password")?,
        text("token")?,
        text("creds_file")?,
    );
    let credentials = match (user, password, token, creds_file) {
        (None, None, None, None) => Credentials::None,
        (Some(user), Some(password), None, None) => Credentials::UserPassword(user, password),
        (Some(_), None, _, _) => {
            return Err("properties.password: required with properties.user".to_string())
        }
        (None, Some(_), _, _) => {
            return Err("properties.user: required with properties.password".to_string())
        }
        (None, None, Some(token), None) => Credentials::Token(token),
        (None, None, None, Some(path)) => Credentials::CredsFile(path),
        _ => {
            return Err(
                "properties: give only one of user/password, token or creds_file".to_string(),
            )
        }
    };
    Ok(NatsSource {
        name: String::new(),
        servers,
        subjects,
        queue_group,
        jetstream,
        max_reconnect_attempts,
        reconnect_time_wait,
        credentials,
    })
}

fn non_empty_string(value: &Value, field: &str) -> Result<String, String> {
    match value.as_str() {
        Some(text) if !text.trim().is_empty() => Ok(text.to_string()),
        _ => Err(format!("{field}: must be a non-empty string")),
    }
}

fn parse_servers(value: Option<&Value>) -> Result<Vec<ServerAddr>, String> {
    let urls: Vec<&Value> = match value {
        None | Some(Value::Null) => {
            return Err("properties.servers: required (e.g. \"nats://127.0.0.1:4222\")".to_string())
        }
        Some(Value::Array(items)) if items.is_empty() => {
            return Err("properties.servers: must list at least one server".to_string())
        }
        Some(Value::Array(items)) => items.iter().collect(),
        Some(other) => vec![other],
    };
    urls.into_iter()
        .enumerate()
        .map(|(i, url)| {
            let field = if value.is_some_and(Value::is_array) {
                format!("properties.servers[{i}]")
            } else {
                "properties.servers".to_string()
            };
            let url = url
                .as_str()
                .ok_or_else(|| format!("{field}: must be a string like nats://host:port"))?;
            parse_server(url).map_err(|why| format!("{field}: `{url}` {why}"))
        })
        .collect()
}

fn parse_server(url: &str) -> Result<ServerAddr, String> {
    let Some((scheme, rest)) = url.split_once("://") else {
        return Err("is not a URL like nats://host:port".to_string());
    };
    if !matches!(scheme, "nats" | "tls" | "ws" | "wss") {
        return Err(format!(
            "has scheme `{scheme}`; expected nats://, tls://, ws:// or wss://"
        ));
    }
    let authority = rest.rsplit('@').next().unwrap_or(rest);
    let authority = authority.split('/').next().unwrap_or(authority);
    let (host, port) = match authority.rsplit_once(':') {
        Some((host, port)) if !host.ends_with(']') || host.starts_with('[') => (host, Some(port)),
        _ => (authority, None),
    };
    if host.is_empty() || host.contains(|c: char| c.is_whitespace()) {
        return Err("has no host".to_string());
    }
    if let Some(port) = port {
        if port.parse::<u16>().map_or(true, |p| p == 0) {
            return Err(format!("has an invalid port `{port}`"));
        }
    }
    url.parse::<ServerAddr>()
        .map_err(|e| format!("is invalid: {e}"))
}

fn parse_subjects(value: Option<&Value>) -> Result<Vec<String>, String> {
    let items = match value {
        None | Some(Value::Null) => {
            return Err("properties.subjects: required (array of subjects)".to_string())
        }
        Some(Value::Array(items)) => items,
        Some(_) => return Err("properties.subjects: must be an array of subjects".to_string()),
    };
    if items.is_empty() {
        return Err("properties.subjects: must list at least one subject".to_string());
    }
    items
        .iter()
        .enumerate()
        .map(|(i, item)| {
            let field = format!("properties.subjects[{i}]");
            let subject = item
                .as_str()
                .ok_or_else(|| format!("{field}: must be a string"))?;
            if !valid_subject(subject) {
                return Err(format!(
                    "{field}: `{subject}` is not a valid subject (tokens separated by `.`, \
                     `*` for one token, `>` only last)"
                ));
            }
            Ok(subject.to_string())
        })
        .collect()
}

fn valid_subject(subject: &str) -> bool {
    let tokens: Vec<&str> = subject.split('.').collect();
    tokens.iter().enumerate().all(|(i, token)| {
        !token.is_empty()
            && !token.contains(|c: char| c.is_whitespace())
            && (*token == ">" && i == tokens.len() - 1 || !token.contains('>'))
            && (*token == "*" || !token.contains('*'))
    })
}

fn parse_jetstream(value: &Value) -> Result<JetStreamSettings, String> {
    let Some(object) = value.as_object() else {
        return Err("properties.jetstream: must be an object with `stream`".to_string());
    };
    const FIELDS: &[&str] = &["stream", "durable", "deliver", "ack_wait_ms"];
    if let Some(unknown) = object.keys().find(|k| !FIELDS.contains(&k.as_str())) {
        return Err(format!(
            "properties.jetstream.{unknown}: unknown field (known: {})",
            FIELDS.join(", ")
        ));
    }
    let name_field = |key: &str, default: Option<&str>| -> Result<String, String> {
        let field = format!("properties.jetstream.{key}");
        let name = match object.get(key) {
            None if default.is_some() => return Ok(default.unwrap_or_default().to_string()),
            None => return Err(format!("{field}: required")),
            Some(value) => non_empty_string(value, &field)?,
        };
        if name.contains(['.', '*', '>', ' ', '\t', '/', '\\']) {
            return Err(format!(
                "{field}: `{name}` must not contain `.`, `*`, `>`, `/`, `\\` or spaces"
            ));
        }
        Ok(name)
    };
    let stream = name_field("stream", None)?;
    let durable = name_field("durable", Some("wsgate"))?;
    let deliver = match object.get("deliver") {
        None => Deliver::All,
        Some(value) => match value.as_str() {
            Some("all") => Deliver::All,
            Some("new") => Deliver::New,
            _ => return Err("properties.jetstream.deliver: must be \"all\" or \"new\"".to_string()),
        },
    };
    let ack_wait = match object.get("ack_wait_ms") {
        None => Duration::from_millis(30_000),
        Some(value) => match value.as_u64() {
            Some(ms) if ms > 0 => Duration::from_millis(ms),
            _ => {
                return Err(
                    "properties.jetstream.ack_wait_ms: must be a positive integer (ms)".to_string(),
                )
            }
        },
    };
    Ok(JetStreamSettings {
        stream,
        durable,
        deliver,
        ack_wait,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::DatasourceKind;
    use serde_json::json;

    fn datasource(properties: Value) -> Datasource {
        Datasource {
            version: 1,
            kind: DatasourceKind::Nats,
            name: "nats-md".to_string(),
            properties: properties.as_object().cloned().unwrap(),
        }
    }

    fn refused(properties: Value, field: &str) {
        match NatsSource::from_datasource(&datasource(properties.clone())) {
            Err(SourceError::Config { name, message }) => {
                assert_eq!(name, "nats-md");
                assert!(
                    message.starts_with(field),
                    "error for {properties} should name `{field}`: {message}"
                );
            }
            Err(other) => panic!("unexpected error {other}"),
            Ok(source) => panic!("{properties} accepted: {source:?}"),
        }
    }

    fn good() -> Value {
        json!({"servers": "nats://127.0.0.1:4222", "subjects": ["trade.>"]})
    }

    fn with(key: &str, value: Value) -> Value {
        let mut properties = good();
        properties[key] = value;
        properties
    }

    #[test]
    fn defaults() {
        let source = NatsSource::from_datasource(&datasource(good())).unwrap();
        assert_eq!(source.name, "nats-md");
        assert_eq!(source.servers.len(), 1);
        assert_eq!(source.subjects, vec!["trade.>"]);
        assert_eq!(source.queue_group, "wsgate");
        assert_eq!(source.jetstream, None);
        assert_eq!(source.max_reconnect_attempts, None);
        assert_eq!(source.reconnect_time_wait, Duration::from_millis(1000));
        assert_eq!(source.credentials, Credentials::None);
        assert_eq!(source.backpressure(), Backpressure::Wait);
    }

    #[test]
    fn full_jetstream_config() {
        let properties = json!({
            "servers": ["nats://a:4222", "nats://b:4223"],
            "subjects": ["trade.*", "book.BTCUSDT"],
            "queue_group": "md",
            "jetstream": {"stream": "MD", "durable": "gw", "deliver": "new", "ack_wait_ms": 500},
            "max_reconnect_attempts": 5,
            "reconnect_time_wait_ms": 200,
            "user": "u",
            "password": "p"
        });
        let source = NatsSource::from_datasource(&datasource(properties)).unwrap();
        assert_eq!(source.servers.len(), 2);
        assert_eq!(source.queue_group, "md");
        assert_eq!(
            source.jetstream,
            Some(JetStreamSettings {
                stream: "MD".into(),
                durable: "gw".into(),
                deliver: Deliver::New,
                ack_wait: Duration::from_millis(500),
            })
        );
        assert_eq!(source.max_reconnect_attempts, Some(5));
        assert_eq!(source.reconnect_time_wait, Duration::from_millis(200));
        assert_eq!(
            source.credentials,
            Credentials::UserPassword("u".into(), "p".into())
        );
        let js = json!({"jetstream": {"stream": "MD"}, "token": "t"});
        let mut properties = good();
        properties["jetstream"] = js["jetstream"].clone();
        properties["token"] = js["token"].clone();
        let source = NatsSource::from_datasource(&datasource(properties)).unwrap();
        let settings = source.jetstream.clone().unwrap();
        assert_eq!(settings.durable, "wsgate");
        assert_eq!(settings.deliver, Deliver::All);
        assert_eq!(settings.ack_wait, Duration::from_secs(30));
        assert_eq!(source.credentials, Credentials::Token("t".into()));
    }

    #[test]
    fn missing_servers() {
        refused(json!({"subjects": ["a"]}), "properties.servers");
        refused(with("servers", json!([])), "properties.servers");
    }

    #[test]
    fn bad_server_urls() {
        refused(
            with("servers", json!("127.0.0.1:4222")),
            "properties.servers",
        );
        refused(
            with("servers", json!("http://h:4222")),
            "properties.servers",
        );
        refused(with("servers", json!("nats://:4222")), "properties.servers");
        refused(
            with("servers", json!("nats://h:notaport")),
            "properties.servers",
        );
        refused(
            with("servers", json!(["nats://ok:4222", "nats://h:99999"])),
            "properties.servers[1]",
        );
        refused(with("servers", json!(7)), "properties.servers");
    }

    #[test]
    fn bad_subjects() {
        refused(json!({"servers": "nats://h:1"}), "properties.subjects");
        refused(with("subjects", json!([])), "properties.subjects");
        refused(with("subjects", json!("trade.>")), "properties.subjects");
        refused(with("subjects", json!(["a", ""])), "properties.subjects[1]");
        refused(with("subjects", json!(["a.>.b"])), "properties.subjects[0]");
        refused(with("subjects", json!(["a..b"])), "properties.subjects[0]");
        refused(with("subjects", json!([3])), "properties.subjects[0]");
    }

    #[test]
    fn bad_jetstream() {
        refused(with("jetstream", json!({})), "properties.jetstream.stream");
        refused(
            with("jetstream", json!({"durable": "d"})),
            "properties.jetstream.stream",
        );
        refused(with("jetstream", json!("MD")), "properties.jetstream");
        refused(
            with("jetstream", json!({"stream": "M.D"})),
            "properties.jetstream.stream",
        );
        refused(
            with("jetstream", json!({"stream": "MD", "deliver": "last"})),
            "properties.jetstream.deliver",
        );
        refused(
            with("jetstream", json!({"stream": "MD", "ack_wait_ms": 0})),
            "properties.jetstream.ack_wait_ms",
        );
        refused(
            with("jetstream", json!({"stream": "MD", "color": 1})),
            "properties.jetstream.color",
        );
    }

    #[test]
    fn bad_other_properties() {
        refused(with("queue_group", json!("")), "properties.queue_group");
        refused(
            with("max_reconnect_attempts", json!(-1)),
            "properties.max_reconnect_attempts",
        );
        refused(
            with("reconnect_time_wait_ms", json!("1s")),
            "properties.reconnect_time_wait_ms",
        );
        refused(with("user", json!("u")), "properties.password");
        refused(with("password", json!("p")), "properties.user");
        let mut both = with("token", json!("t"));
        both["creds_file"] = json!("/x.creds");
        refused(both, "properties");
        refused(with("colour", json!("blue")), "properties.colour");
    }

    #[test]
    fn backoff_is_capped_and_grows() {
        let base = Duration::from_millis(100);
        assert!(backoff(base, 1) <= Duration::from_millis(125));
        assert!(backoff(base, 4) >= Duration::from_millis(600));
        assert!(backoff(base, 100) <= MAX_BACKOFF);
    }
}
