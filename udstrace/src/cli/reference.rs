//! `udstrace reference empty|floor` (hidden): attaches one of the reference programs
//! (`udstrace-ebpf/src/reference.rs`) and reads its records until SIGINT or SIGTERM, as a
//! capture would (every byte of each record is read). `cargo xtask bench` runs its one-thread
//! loops under both, so that the capture's cost is set against what any program on the same
//! hook costs, in the same run.

use std::time::Duration;

use super::{
    args::{DEFAULT_BUFFER_KIB, DEFAULT_SNAPLEN},
    Failure,
};
use crate::{
    sys,
    tracer::{Tracer, TracerConfig, REFERENCE_EMPTY, REFERENCE_FLOOR},
};

/// How often the ring buffer is drained: the capture's own drain timer.
const DRAIN: Duration = Duration::from_millis(10);

pub(super) fn run(which: &str) -> Result<(), Failure> {
    let name = match which {
        "empty" => REFERENCE_EMPTY,
        "floor" => REFERENCE_FLOOR,
        other => {
            return Err(Failure::Usage(format!(
                "unknown reference program `{other}` (expected empty or floor)"
            )))
        }
    };
    let signals = sys::block_stop_signals();
    let config = TracerConfig::new(DEFAULT_BUFFER_KIB * 1024, DEFAULT_SNAPLEN);
    let mut tracer = Tracer::start_reference(name, &config)?;
    let mut events = tracer.take_events();
    eprintln!("listening on reference program {which} (sock:sock_send_length)");
    let (mut records, mut sum) = (0u64, 0u64);
    loop {
        while let Some(record) = events.next() {
            records += 1;
            sum = record
                .iter()
                .fold(sum, |s, &b| s.wrapping_add(u64::from(b)));
        }
        // Woken by the programs as a capture is (when an eighth of the buffer waits), else
        // on the drain timer.
        sys::wait_readable(&events, DRAIN);
        if sys::stop_signal(&signals, Duration::ZERO) {
            break;
        }
    }
    tracer.detach();
    eprintln!("{records} records read (reference program {which}; byte sum {sum:x})");
    Ok(())
}
