//! `udstrace backends`: tries every attach backend on this kernel (load, attach, detach) and
//! says which work.

use std::fmt::Write as _;

use super::{args::DEFAULT_SNAPLEN, stdout_error, Failure};
use crate::tracer::{Tracer, TracerConfig};

pub(super) fn run() -> Result<(), Failure> {
    use std::io::Write as _;
    // Every program a capture may use, the receive side's included.
    let config = TracerConfig {
        recv: true,
        ..TracerConfig::new(1 << 20, DEFAULT_SNAPLEN)
    };
    let mut text = String::new();
    for status in Tracer::probe_backends(&config)? {
        let _ = writeln!(
            text,
            "{}\t{}\t{}",
            status.kind,
            status.state.name(),
            status.detail
        );
    }
    std::io::stdout()
        .write_all(text.as_bytes())
        .map_err(stdout_error)
}
