//! How a capture stops. SIGINT, SIGTERM and SIGHUP end it the same way (SIGHUP only when it
//! is not ignored: `nohup udstrace` keeps running when its terminal goes). After the stop the
//! output thread is waited for only while the output takes something; a second signal ends the
//! wait at once.

use std::{
    io,
    time::{Duration, Instant},
};

use tokio::signal::unix::{signal, Signal, SignalKind};

use crate::{error::Error, output::writer::Writer, sys};

/// How long the output may take nothing, after the stop, before udstrace gives up on it: a
/// pipe or FIFO whose reader may be gone, a terminal.
pub(crate) const OUTPUT_GRACE: Duration = Duration::from_millis(500);

/// The same for a regular file udstrace writes: its writes always end, but the kernel's
/// writeback throttling can hold one for seconds while the disk is busy with other I/O.
pub(crate) const FILE_GRACE: Duration = Duration::from_secs(5);

/// The grace of `writer`'s output.
fn grace(writer: &Writer) -> Duration {
    if writer.regular_file() {
        FILE_GRACE
    } else {
        OUTPUT_GRACE
    }
}

/// How often the wait looks at the output thread.
const POLL: Duration = Duration::from_millis(5);

/// The signals that stop a capture.
pub(super) struct Signals {
    interrupt: Signal,
    terminate: Signal,
    hangup: Option<Signal>,
    /// A signal taken in by a wait that ended on it, for the next wait to see too.
    held: bool,
}

impl Signals {
    /// Takes over SIGINT, SIGTERM and, unless it is ignored, SIGHUP.
    pub(super) fn new() -> Result<Self, Error> {
        let hangup = if sys::signal_ignored(libc::SIGHUP) {
            None
        } else {
            Some(signal(SignalKind::hangup()).map_err(Error::Signals)?)
        };
        Ok(Self {
            interrupt: signal(SignalKind::interrupt()).map_err(Error::Signals)?,
            terminate: signal(SignalKind::terminate()).map_err(Error::Signals)?,
            hangup,
            held: false,
        })
    }

    /// Waits for the next stop signal (at once for one held).
    pub(super) async fn recv(&mut self) {
        if std::mem::take(&mut self.held) {
            return;
        }
        let Self {
            interrupt,
            terminate,
            hangup,
            held: _,
        } = self;
        let hangup = async {
            match hangup {
                Some(h) => h.recv().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = interrupt.recv() => {}
            _ = terminate.recv() => {}
            _ = hangup => {}
        }
    }
}

/// How the output ended.
#[derive(Debug)]
pub(crate) enum OutputEnd {
    /// Everything was written (or its reader went away: a closed pipe ends a capture).
    Written,
    /// A write failed (disk full): a file was cut back to its whole blocks, and `unwritten`
    /// packets were not written.
    Failed { error: Error, unwritten: u64 },
    /// The output took nothing for `grace` ([`OUTPUT_GRACE`], [`FILE_GRACE`]) after the stop:
    /// `unwritten` packets and the statistics block were not written.
    Blocked { unwritten: u64, grace: Duration },
    /// A second signal came while waiting for the output.
    Abandoned { unwritten: u64 },
}

/// How the output ended, from `result`, the capture's last hand-off (the statistics block),
/// then waiting for the output thread, which was given `packets` packets. A closed pipe is no
/// failure: its reader is done.
pub(super) async fn output_end(
    result: io::Result<()>,
    packets: u64,
    writer: &Writer,
    stopped: Stopped,
    signals: &mut Signals,
    error: impl Fn(io::Error) -> Error,
) -> OutputEnd {
    let is_broken_pipe = |e: &io::Error| e.kind() == io::ErrorKind::BrokenPipe;
    let unwritten = || packets.saturating_sub(writer.written());
    let failed = |e: io::Error| OutputEnd::Failed {
        error: error(e),
        unwritten: unwritten(),
    };
    match result {
        Ok(()) => match wait_for_output(writer, stopped, signals).await {
            Waited::Done => OutputEnd::Written,
            Waited::Failed => match writer.error() {
                Some(e) if !is_broken_pipe(&e) => failed(e),
                _ => OutputEnd::Written,
            },
            Waited::Blocked => OutputEnd::Blocked {
                unwritten: unwritten(),
                grace: grace(writer),
            },
            Waited::Signalled => OutputEnd::Abandoned {
                unwritten: unwritten(),
            },
        },
        Err(e) if is_broken_pipe(&e) => OutputEnd::Written,
        Err(e) => {
            // What was handed over before the error is still written (the earlier files of a
            // rotated set, whole, when the next one cannot be opened): the process must not
            // end under the output thread. A failed thread returns at once.
            let _ = wait_for_output(writer, stopped, signals).await;
            failed(e)
        }
    }
}

/// How waiting for room in the output's queue ended.
pub(super) enum Room {
    Made,
    /// The output took nothing for its grace.
    Stalled,
    /// A second signal came (held for the wait for the output thread).
    Signalled,
}

/// Waits, in the final drain, until the output thread has taken enough of its queue that
/// `blocked` is false, has taken nothing for its grace ([`grace`]), or a signal comes.
pub(super) async fn wait_for_room(
    writer: &Writer,
    blocked: impl Fn() -> bool,
    signals: &mut Signals,
) -> Room {
    let mut since = Progress::new(writer.progress(), Instant::now());
    while blocked() {
        tokio::select! {
            biased;
            () = signals.recv() => {
                signals.held = true;
                return Room::Signalled;
            }
            () = tokio::time::sleep(ROOM_POLL) => {}
        }
        if writer.failed() || since.stalled(writer) {
            return Room::Stalled;
        }
    }
    Room::Made
}

/// How often [`wait_for_room`] looks: the capture loop's look while its output is behind.
const ROOM_POLL: Duration = Duration::from_millis(2);

/// How waiting for the output thread ended.
enum Waited {
    Done,
    Failed,
    Blocked,
    Signalled,
}

/// When the capture stopped, and how far the output thread had got then.
#[derive(Debug, Clone, Copy)]
pub(super) struct Stopped {
    at: Instant,
    progress: u64,
    /// The output had written everything handed to it: it was keeping up.
    idle: bool,
}

impl Stopped {
    pub(super) fn now(writer: &Writer) -> Self {
        Self {
            at: Instant::now(),
            progress: writer.progress(),
            idle: writer.idle(),
        }
    }
}

/// Waits until the output thread has written everything, has failed, has taken nothing for
/// its grace ([`grace`]: counted from the stop, or from its last progress since; from the last
/// hand-off for an output that had written everything when the capture stopped), or a signal
/// comes.
async fn wait_for_output(writer: &Writer, stopped: Stopped, signals: &mut Signals) -> Waited {
    let Stopped { at, progress, idle } = stopped;
    // An output that was keeping up when the capture stopped is not blocked by the time the
    // final drain took (long on a slow machine): its grace starts with the last hand-off.
    let mut since = Progress::new(progress, if idle { Instant::now() } else { at });
    let mut pause = Duration::ZERO;
    loop {
        // A signal first, even one that came while the last records were drained (the
        // yield lets the runtime take it in).
        tokio::task::yield_now().await;
        tokio::select! {
            biased;
            () = signals.recv() => return Waited::Signalled,
            () = tokio::time::sleep(pause) => {}
        }
        pause = POLL;
        if writer.finished() {
            return Waited::Done;
        }
        if writer.failed() {
            return Waited::Failed;
        }
        if since.stalled(writer) {
            return Waited::Blocked;
        }
    }
}

/// How far the output thread had got, and since when.
struct Progress {
    progress: u64,
    moved: Instant,
}

impl Progress {
    fn new(progress: u64, moved: Instant) -> Self {
        Self { progress, moved }
    }

    /// Whether the output has taken nothing for its grace ([`grace`]) since it last moved.
    fn stalled(&mut self, writer: &Writer) -> bool {
        let now = writer.progress();
        if now != self.progress {
            self.progress = now;
            self.moved = Instant::now();
            return false;
        }
        self.moved.elapsed() >= grace(writer)
    }
}
