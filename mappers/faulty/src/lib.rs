//! wsgate test mapper that misbehaves on purpose, so the gateway's tests can prove a bad mapper
//! is contained. The `mode` init parameter chooses what `map-batch` does:
//!
//! | mode | `map-batch` |
//! |---|---|
//! | `echo` (default) | one output per event: the payload bytes as a string (lossy UTF-8), vars `symbol` = the key lowercased (none without a key) |
//! | `loop` | spins forever (until the host's CPU limit interrupts it) |
//! | `trap` | panics, which traps |
//! | `junk` | like `echo`, but every payload is `{not json` |
//! | `oom` | allocates and touches 1 MiB blocks without bound (until the host's memory limit) |
//! | `probe` | like `echo`, but every payload reports what the sandbox grants: `{"env": <HOME or null>, "clock_s": <wall-clock seconds>}` |
//!
//! Any other `mode` makes `init` fail with `invalid-input`. Other parameters are ignored.

wit_bindgen::generate!({
    path: "../../wit",
    world: "event-mapper",
});

use std::hint::black_box;
use std::sync::atomic::{AtomicU8, Ordering};

use exports::wsgate::mapper::mapper::{Event, Guest, MapError, Output};
use wsgate::mapper::host::{log, Level};

/// What `map-batch` does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
enum Mode {
    Echo,
    Loop,
    Trap,
    Junk,
    Oom,
    Probe,
}

impl Mode {
    const ALL: [Mode; 6] = [
        Mode::Echo,
        Mode::Loop,
        Mode::Trap,
        Mode::Junk,
        Mode::Oom,
        Mode::Probe,
    ];

    fn name(self) -> &'static str {
        match self {
            Mode::Echo => "echo",
            Mode::Loop => "loop",
            Mode::Trap => "trap",
            Mode::Junk => "junk",
            Mode::Oom => "oom",
            Mode::Probe => "probe",
        }
    }

    fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|mode| mode.name() == name)
    }
}

/// The mode chosen by `init`, as `Mode as u8`.
static MODE: AtomicU8 = AtomicU8::new(Mode::Echo as u8);

/// The exported mapper.
struct Faulty;

impl Guest for Faulty {
    fn init(params: Vec<(String, String)>) -> Result<(), MapError> {
        let mode = match params.iter().rev().find(|(key, _)| key == "mode") {
            None => Mode::Echo,
            Some((_, value)) => Mode::parse(value).ok_or_else(|| {
                MapError::InvalidInput(format!(
                    "unknown mode {value:?}: expected echo, loop, trap, junk, oom or probe"
                ))
            })?,
        };
        MODE.store(mode as u8, Ordering::Relaxed);
        log(
            Level::Debug,
            &format!("faulty mapper: mode={}", mode.name()),
        );
        Ok(())
    }

    fn map_batch(events: Vec<Event>) -> Vec<Result<Vec<Output>, MapError>> {
        let mode = Mode::ALL[usize::from(MODE.load(Ordering::Relaxed))];
        match mode {
            Mode::Echo => events.iter().map(|event| Ok(vec![echo(event)])).collect(),
            Mode::Junk => events
                .iter()
                .map(|event| {
                    Ok(vec![Output {
                        payload: "{not json".to_owned(),
                        ..echo(event)
                    }])
                })
                .collect(),
            Mode::Probe => events
                .iter()
                .map(|event| {
                    Ok(vec![Output {
                        payload: probe(),
                        ..echo(event)
                    }])
                })
                .collect(),
            Mode::Loop => spin(),
            Mode::Trap => panic!("faulty mapper: mode=trap"),
            Mode::Oom => hoard(),
        }
    }
}

/// The event's payload as the output payload, routed by its key.
fn echo(event: &Event) -> Output {
    let topic_vars = match &event.key {
        Some(key) => vec![(
            "symbol".to_owned(),
            String::from_utf8_lossy(key).to_lowercase(),
        )],
        None => Vec::new(),
    };
    Output {
        topic_vars,
        user_id: None,
        payload: String::from_utf8_lossy(&event.payload).into_owned(),
    }
}

/// What the sandbox lets the mapper see: one environment variable and the wall clock.
fn probe() -> String {
    let env = match std::env::var("HOME") {
        Ok(value) => format!("{value:?}"),
        Err(_) => "null".to_owned(),
    };
    let clock_s = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    format!(r#"{{"env":{env},"clock_s":{clock_s}}}"#)
}

/// Busy-loops forever; `black_box` keeps the optimizer from removing the loop.
fn spin() -> ! {
    let mut counter = 0u64;
    loop {
        counter = black_box(counter.wrapping_add(1));
    }
}

/// Allocates 1 MiB blocks forever, writing to every page so the memory is really used.
fn hoard() -> ! {
    const BLOCK: usize = 1 << 20;
    const PAGE: usize = 4096;
    let mut blocks: Vec<Vec<u8>> = Vec::new();
    loop {
        let mut block = vec![0u8; BLOCK];
        for page in block.chunks_mut(PAGE) {
            page[0] = 1;
        }
        blocks.push(black_box(block));
    }
}

export!(Faulty);
