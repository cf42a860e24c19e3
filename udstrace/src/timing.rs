//! Where start-up time goes: with `--verbose` (or `UDSTRACE_TIMING=1` in the environment),
//! one line on stderr per phase of a start (BTF read, object load, each program's load and
//! attach, the output opened), `udstrace: timing: loaded sock_send_length in 12.3 ms`, and the
//! time from the start of `main` to attached. Off, a phase costs one relaxed load.

use std::{
    fmt::Display,
    sync::{
        atomic::{AtomicBool, Ordering},
        OnceLock,
    },
    time::Instant,
};

/// Whether the lines are printed.
static ON: AtomicBool = AtomicBool::new(false);
/// When `main` started.
static START: OnceLock<Instant> = OnceLock::new();

/// The environment variable that turns the lines on without `--verbose`.
pub(crate) const ENV: &str = "UDSTRACE_TIMING";

/// Notes the start of the process; the lines are printed from now on if `verbose` or
/// `UDSTRACE_TIMING` is set (to anything but empty or `0`).
pub(crate) fn init(verbose: bool) {
    let _ = START.set(Instant::now());
    let env = std::env::var_os(ENV).is_some_and(|v| !v.is_empty() && v != "0");
    ON.store(verbose || env, Ordering::Relaxed);
}

/// Whether the lines are printed.
#[must_use]
pub(crate) fn enabled() -> bool {
    ON.load(Ordering::Relaxed)
}

/// A phase being timed (nothing when the lines are off).
#[must_use]
pub(crate) struct Phase(Option<Instant>);

impl Phase {
    pub(crate) fn start() -> Self {
        Self(enabled().then(Instant::now))
    }

    /// Prints `udstrace: timing: {what} in N ms`.
    pub(crate) fn done(self, what: impl Display) {
        if let Some(start) = self.0 {
            eprintln!("udstrace: timing: {what} in {}", millis(start));
        }
    }
}

/// Prints `udstrace: timing: {what} N ms after start`.
pub(crate) fn since_start(what: impl Display) {
    if let (true, Some(start)) = (enabled(), START.get()) {
        eprintln!("udstrace: timing: {what} {} after start", millis(*start));
    }
}

fn millis(since: Instant) -> String {
    format!("{:.1} ms", since.elapsed().as_secs_f64() * 1e3)
}
