//! Binance market-stream connect URLs: `/ws/<stream>…`, `/stream?streams=…`, `timeUnit`
//! (`docs/binance-protocol.md` §1); and the gateway's resume parameters on `/stream`:
//! `resume=true` (sequence numbers in the combined wrapper) and
//! `resumeFrom=<stream>:<seq>/<stream>:<seq>` (replay each stream after the last sequence
//! number the client received; implies `resume=true`).

use percent_encoding::percent_decode_str;

use super::looks_like_stream;
use crate::auth::listen_keys::looks_like_listen_key;

/// What a client asked for in its connect URL.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ConnectTarget {
    /// Wrap events as `{"stream":..,"data":..}` (`/stream` paths).
    pub combined: bool,
    /// Times in microseconds (`timeUnit=MICROSECOND`).
    pub micros: bool,
    /// Streams to subscribe at once.
    pub streams: Vec<String>,
    /// Listen keys whose owners' events to subscribe at once.
    pub listen_keys: Vec<String>,
    /// Sequence numbers in the combined wrapper (`resume=true`, or `resumeFrom`).
    pub resume: bool,
    /// Streams to replay after the last sequence number the client received, in `streams`.
    pub resume_from: Vec<(String, u64)>,
}

/// Why a connect URL was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TargetError {
    /// Not a stream endpoint.
    #[error("not found")]
    NotFound,
    /// `timeUnit` has a value other than MILLISECOND or MICROSECOND.
    #[error("Invalid timeUnit")]
    BadTimeUnit,
    /// `resume` is not `true` or `false`, or asked on a raw (`/ws`) endpoint, whose events
    /// have no wrapper to carry a sequence number.
    #[error("Invalid resume: sequence numbers need the combined endpoint /stream")]
    BadResume,
    /// `resumeFrom` is not `<stream>:<seq>/…` over streams of `streams`.
    #[error("Invalid resumeFrom: expected <stream>:<seq>/... over streams in streams")]
    BadResumeFrom,
}

/// Parses a request target: `/ws`, `/ws/`, `/ws/<stream>[/<stream>..]`, `/ws/0`, `/stream`,
/// `/stream?streams=a/b`, each optionally percent-encoded and with `timeUnit`.
///
/// A path segment after `/ws/` that is not a stream name (ccxt's `/ws/0`) means "no initial
/// stream", as Binance treats it.
pub fn parse_target(path: &str, query: Option<&str>) -> Result<ConnectTarget, TargetError> {
    let path = percent_decode_str(path).decode_utf8_lossy();
    let mut target = ConnectTarget::default();
    if let Some(rest) = path.strip_prefix("/ws") {
        let rest = match rest {
            "" => "",
            r if r.starts_with('/') => &r[1..],
            _ => return Err(TargetError::NotFound),
        };
        for segment in rest.split('/') {
            if looks_like_stream(segment) {
                target.streams.push(segment.to_string());
            } else if looks_like_listen_key(segment) {
                target.listen_keys.push(segment.to_string());
            }
        }
    } else if path == "/stream" || path == "/stream/" {
        target.combined = true;
    } else {
        return Err(TargetError::NotFound);
    }
    for (key, value) in query_pairs(query.unwrap_or("")) {
        match key.as_str() {
            "streams" if target.combined => {
                let (keys, streams) = value
                    .split('/')
                    .filter(|s| !s.is_empty())
                    .map(str::to_string)
                    .partition(|s| !looks_like_stream(s) && looks_like_listen_key(s));
                target.streams = streams;
                target.listen_keys = keys;
            }
            "timeUnit" => {
                target.micros = match value.as_str() {
                    "MICROSECOND" | "microsecond" => true,
                    "MILLISECOND" | "millisecond" => false,
                    _ => return Err(TargetError::BadTimeUnit),
                }
            }
            "resume" => {
                target.resume |= match value.as_str() {
                    "true" => true,
                    "false" => false,
                    _ => return Err(TargetError::BadResume),
                }
            }
            "resumeFrom" => {
                target.resume_from = parse_positions(&value).ok_or(TargetError::BadResumeFrom)?;
                target.resume = true;
            }
            _ => {}
        }
    }
    if target.resume && !target.combined {
        return Err(TargetError::BadResume);
    }
    let unknown = |(stream, _): &(String, u64)| !target.streams.contains(stream);
    if target.resume_from.iter().any(unknown) {
        return Err(TargetError::BadResumeFrom);
    }
    Ok(target)
}

/// Parses `<stream>:<seq>/<stream>:<seq>…` (each stream once); `None` when malformed.
pub fn parse_positions(value: &str) -> Option<Vec<(String, u64)>> {
    let mut positions: Vec<(String, u64)> = Vec::new();
    for item in value.split('/').filter(|s| !s.is_empty()) {
        let (stream, seq) = item.rsplit_once(':')?;
        let seq: u64 = seq.parse().ok()?;
        if !looks_like_stream(stream) || positions.iter().any(|(s, _)| s == stream) {
            return None;
        }
        positions.push((stream.to_string(), seq));
    }
    (!positions.is_empty()).then_some(positions)
}

fn query_pairs(query: &str) -> impl Iterator<Item = (String, String)> + '_ {
    query.split('&').filter(|p| !p.is_empty()).map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let decode = |s: &str| percent_decode_str(s).decode_utf8_lossy().into_owned();
        (decode(k), decode(v))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(path: &str, query: Option<&str>) -> ConnectTarget {
        parse_target(path, query).unwrap()
    }

    #[test]
    fn accepts_every_url_form_clients_use() {
        assert_eq!(target("/ws", None), ConnectTarget::default());
        assert_eq!(target("/ws/", None), ConnectTarget::default());
        assert_eq!(target("/ws/0", None), ConnectTarget::default());
        assert_eq!(target("/ws/btcusdt@trade", None).streams, ["btcusdt@trade"]);
        assert_eq!(
            target("/ws/btcusdt%40trade", None).streams,
            ["btcusdt@trade"]
        );
        assert_eq!(
            target("/ws/a@trade/b@depth", None).streams,
            ["a@trade", "b@depth"]
        );
        let stream = target("/stream", None);
        assert!(stream.combined && stream.streams.is_empty());
        assert!(target("/stream", Some("streams=")).streams.is_empty());
        assert_eq!(
            target("/stream", Some("streams=a@trade/b@depth")).streams,
            ["a@trade", "b@depth"]
        );
        assert_eq!(
            target(
                "/stream",
                Some("streams=a%40trade%2Fb%40depth&timeUnit=MICROSECOND")
            ),
            ConnectTarget {
                combined: true,
                micros: true,
                streams: vec!["a@trade".into(), "b@depth".into()],
                listen_keys: Vec::new(),
                resume: false,
                resume_from: Vec::new(),
            }
        );
        assert!(target("/ws/x@trade", Some("timeUnit=microsecond")).micros);
        assert!(!target("/ws", Some("timeUnit=MILLISECOND")).micros);
    }

    #[test]
    fn resume_from_names_positions_of_the_streams() {
        let t = target(
            "/stream",
            Some("streams=btcusdt@trade/ethusdt@trade&resumeFrom=btcusdt%40trade:123/ethusdt@trade:0"),
        );
        assert!(t.resume && t.combined);
        assert_eq!(
            t.resume_from,
            [
                ("btcusdt@trade".to_string(), 123),
                ("ethusdt@trade".to_string(), 0)
            ]
        );
        assert!(target("/stream", Some("streams=a@trade&resume=true")).resume);
        assert!(!target("/stream", Some("streams=a@trade&resume=false")).resume);
        assert!(target("/stream", Some("streams=a@trade"))
            .resume_from
            .is_empty());
    }

    #[test]
    fn malformed_resume_parameters_are_refused() {
        let refused = |query: &str| parse_target("/stream", Some(query)).unwrap_err();
        for query in [
            "streams=a@trade&resumeFrom=a@trade",
            "streams=a@trade&resumeFrom=a@trade:x",
            "streams=a@trade&resumeFrom=a@trade:-1",
            "streams=a@trade&resumeFrom=a@trade:1/a@trade:2",
            "streams=a@trade&resumeFrom=b@trade:1",
            "streams=a@trade&resumeFrom=",
            "streams=a@trade&resumeFrom=nonsense:1",
        ] {
            assert_eq!(refused(query), TargetError::BadResumeFrom, "{query}");
        }
        assert_eq!(
            refused("streams=a@trade&resume=yes"),
            TargetError::BadResume
        );
        assert_eq!(
            parse_target("/ws/a@trade", Some("resume=true")),
            Err(TargetError::BadResume)
        );
        assert_eq!(
            parse_target("/ws/a@trade", Some("resumeFrom=a@trade:5")),
            Err(TargetError::BadResume)
        );
    }

    #[test]
    fn listen_keys_are_told_from_streams() {
        let key = "pqia91ma19a5s61cv6a81va65sdf19v8a65a1a5s61cv6a81va65sdf19v8a65a1";
        let raw = target(&format!("/ws/{key}"), None);
        assert_eq!(
            (raw.streams.len(), &raw.listen_keys[..]),
            (0, &[key.to_string()][..])
        );
        let both = target("/stream", Some(&format!("streams=btcusdt@trade/{key}")));
        assert!(both.combined);
        assert_eq!(both.streams, ["btcusdt@trade"]);
        assert_eq!(both.listen_keys, [key]);
        assert!(target("/ws/tooshort", None).listen_keys.is_empty());
    }

    #[test]
    fn refuses_other_paths_and_time_units() {
        assert_eq!(parse_target("/wsx", None), Err(TargetError::NotFound));
        assert_eq!(
            parse_target("/stream/nonsense", None),
            Err(TargetError::NotFound)
        );
        assert_eq!(parse_target("/", None), Err(TargetError::NotFound));
        assert_eq!(
            parse_target("/ws", Some("timeUnit=NANOSECOND")),
            Err(TargetError::BadTimeUnit)
        );
    }
}
