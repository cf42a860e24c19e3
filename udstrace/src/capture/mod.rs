//! The capture loop: drains the ring buffer, turns records into packets, hands them to the
//! output, and stops cleanly on SIGINT/SIGTERM/SIGHUP (`stop.rs`), `-c`, the last file of
//! `-G -W`, or an output error.

use std::{
    io,
    os::fd::{AsRawFd, RawFd},
    path::PathBuf,
    time::Duration,
};

use tokio::io::{unix::AsyncFd, Interest};

use crate::{
    error::Error,
    output::{
        dbus::BusNames,
        dbus_sink::DbusSink,
        file::Destination,
        pcapng::{CaptureInfo, Stats},
        ports::Ports,
        rotate::Rotation,
        section,
        sink::{self, Sink},
        text::PayloadStyle,
        writer::Writer,
    },
    timing::Phase,
    tracer::{record::Record, ring::EventRing, Tracer, TracerConfig},
};

pub(crate) mod clock;
mod control;
pub(crate) mod filter;
mod notify;
pub(crate) mod packetizer;
mod recent;
pub(crate) mod stop;
pub(crate) mod targets;

use clock::WallClock;
use filter::Filter;
use notify::Notifier;
pub(crate) use packetizer::Packetizer;
use stop::{OutputEnd, Signals};
use targets::{Targets, CONTAINER_REFRESH, PATH_REFRESH};

/// Records handled before the loop looks at signals and timers again.
const BATCH: usize = 4096;
/// Records handled between two looks at how full the ring buffer is.
const LEVEL_EVERY: usize = 64;

/// How soon the ring buffer is drained again, without a wakeup from the kernel (which wakes
/// userspace only when an eighth of the buffer is waiting), after a drain that found records;
/// sooner when records come fast (see [`busy_wait`]).
const DRAIN_INTERVAL: Duration = Duration::from_millis(10);

/// The shortest wait between drains while records come fast (see [`busy_wait`]).
const FAST_DRAIN_INTERVAL: Duration = Duration::from_millis(1);

/// The share of the ring buffer the drain timer lets records fill while they come fast: a
/// quarter of the eighth at which the kernel wakes the loop.
const DRAIN_FILL_DIVISOR: u64 = 32;

/// How soon the loop looks again while the output is behind (`Sink::blocked`): a disk catches
/// up within milliseconds, and the loop must hand the output thread more before it runs dry.
const BLOCKED_DRAIN_INTERVAL: Duration = Duration::from_millis(2);

/// For this many looks in a row that found it behind (50 ms); then every `DRAIN_INTERVAL`, for
/// an output that stays behind (a paused reader of a pipe).
const BLOCKED_FAST_DRAINS: u32 = 25;

/// The longest wait between drains: each drain that finds nothing doubles the wait, from
/// `DRAIN_INTERVAL` up to this, so that an idle capture wakes the machine about once a
/// second, not a hundred times. An idle loop has asked the kernel programs to wake it at their
/// next record (`WAKE_REQUEST`), so the first message after a quiet spell is not delayed by
/// this wait.
const IDLE_DRAIN_INTERVAL: Duration = Duration::from_secs(1);

/// How long buffered output waits before it is made visible (pipes, Wireshark, the
/// terminal), counted from the first record not yet flushed; nothing waits, nothing is flushed.
const FLUSH_INTERVAL: Duration = Duration::from_millis(100);

/// How often the loop looks whether freed memory should go back to the system.
const TRIM_INTERVAL: Duration = Duration::from_secs(1);

/// A capture's settings.
#[derive(Debug, Clone)]
pub(crate) struct CaptureOptions {
    pub(crate) tracer: TracerConfig,
    /// `-w`: pcapng to a file or standard output; text view without it.
    pub(crate) write: Option<Destination>,
    /// `-C`, `-G`, `-W`, `-z`: `-w`'s file rotated.
    pub(crate) rotation: Option<Rotation>,
    /// `-c`: stop after this many packets.
    pub(crate) count: Option<u64>,
    pub(crate) style: PayloadStyle,
    pub(crate) verbose: bool,
    /// Records to keep (beyond the kernel's process filter).
    pub(crate) filter: Filter,
    pub(crate) ports: Ports,
    /// The sockets that speak D-Bus (`--decode PATH=dbus`, and the bus sockets).
    pub(crate) dbus: BusNames,
    /// Print capture statistics on stderr every second.
    pub(crate) stats: bool,
    /// Ring buffer size, for the statistics.
    pub(crate) ring_bytes: u32,
    /// What `--container`, `--pod` and `--path` name, looked for again during the capture.
    pub(crate) targets: Targets,
    /// `--host-root`: where the runtimes' state and the cgroup hierarchy are (else `/`).
    pub(crate) host_root: Option<PathBuf>,
    /// `-Z`: the user to become once attached, before the output is opened.
    pub(crate) user: Option<crate::sys::User>,
}

impl CaptureOptions {
    /// The sink `-w` (rotated or not) or the text view asks for, and its output thread.
    fn output(&self, info: &CaptureInfo) -> Result<(Box<dyn Sink>, Writer), Error> {
        let (sink, writer) = sink::open(
            self.write.as_ref(),
            self.rotation.as_ref(),
            info,
            self.style,
        )?;
        Ok((Box::new(DbusSink::new(sink, self.dbus.clone())), writer))
    }
}

/// What a capture did.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Summary {
    pub(crate) packets: u64,
    pub(crate) lost_segments: u64,
    pub(crate) lost_bytes: u64,
    /// Calls whose return the kernel did not report (their messages are lost).
    pub(crate) missed_returns: u64,
    pub(crate) malformed: u64,
}

/// Runs a capture to the end: what it captured, and how its output ended.
pub(crate) fn run(opts: &CaptureOptions) -> Result<(Summary, OutputEnd), Error> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(Error::Ring)?
        .block_on(capture(opts))
}

/// The packetizer for the capture `opts` describes.
fn packetizer(opts: &CaptureOptions) -> Packetizer {
    let packetizer = Packetizer::new(WallClock::new(), opts.count)
        .with_filter(opts.filter.clone())
        .with_ports(opts.ports.clone());
    match &opts.host_root {
        Some(root) => packetizer.with_host_root(root),
        None => packetizer,
    }
}

/// The ring buffer (or the drain timer), registered with the runtime to wake the loop when
/// records arrive (when it expires).
fn register<T: std::os::fd::AsRawFd>(owner: T) -> Result<AsyncFd<T>, Error> {
    // SAFETY: both the ring buffer and the timer own their fd, which stays open and the same
    // for as long as the AsyncFd owns them.
    unsafe { AsyncFd::register_with_interest(owner, Interest::READABLE) }
        .map_err(|e| Error::Ring(e.into()))
}

/// The ring buffer the programs write to, and how much of it waits to be read.
struct Ring {
    events: EventRing,
    /// Whether the loop was behind when last looked at (see [`Ring::behind`]).
    behind: bool,
}

impl Ring {
    fn new(events: EventRing) -> Self {
        Self {
            events,
            behind: false,
        }
    }

    /// The bytes waiting, and the buffer's size.
    fn fill(&self) -> Fill {
        Fill {
            waiting: self.events.waiting(),
            size: self.events.size(),
        }
    }

    /// Whether the loop has fallen behind the programs (see [`still_behind`]). Work that can
    /// wait (looking for receivers in /proc) is left undone meanwhile, so that what the kernel
    /// recorded is not lost for it.
    fn behind(&mut self) -> bool {
        self.behind = still_behind(self.behind, self.events.waiting(), self.events.size());
        self.behind
    }
}

/// How much of the ring buffer waited when a drain began.
#[derive(Clone, Copy)]
struct Fill {
    waiting: u64,
    size: u64,
}

/// The wait before the next drain while records flow, `elapsed` after the last drain ended,
/// when this one found `fill`: [`DRAIN_INTERVAL`], or as long as the records took to fill a
/// [`DRAIN_FILL_DIVISOR`]th of the buffer at the rate they came, down to
/// [`FAST_DRAIN_INTERVAL`]. So while records come fast, the drain timer (a wakeup on
/// udstrace's CPU) ends the wait before the kernel's wakeup at an eighth of the buffer does:
/// that one is an interrupt the sending CPU raises at every record from the eighth until the
/// loop runs, which took 40-60 ns of each 4 KiB message in the one-thread loop
/// (`docs/BENCHMARKS.md`).
fn busy_wait(elapsed: Duration, fill: Fill) -> Duration {
    let target = fill.size / DRAIN_FILL_DIVISOR;
    if fill.waiting <= target {
        return DRAIN_INTERVAL;
    }
    let nanos = elapsed.as_nanos() * u128::from(target) / u128::from(fill.waiting);
    Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
        .clamp(FAST_DRAIN_INTERVAL, DRAIN_INTERVAL)
}

/// The wait before the next drain after one that found records, `elapsed` after the drain
/// before it ended, the last wait having been `waited`: [`busy_wait`], but a drain before the
/// timer (the kernel woke the loop, or it went on after a batch) saw too short a span to
/// lengthen the wait. (The kernel's wakeups at an eighth of the buffer come in bursts, the
/// last ones finding only the records of the last few microseconds.)
fn next_busy_wait(waited: Duration, elapsed: Duration, found: Fill) -> Duration {
    let wait = busy_wait(elapsed, found);
    if elapsed < waited {
        wait.min(waited)
    } else {
        wait
    }
}

/// Whether a loop that `was` behind is, with `waiting` bytes of a `size`-byte ring buffer
/// unread: from more than a quarter waiting until less than a sixteenth does.
fn still_behind(was: bool, waiting: u64, size: u64) -> bool {
    if was {
        waiting > size / 16
    } else {
        waiting > size / 4
    }
}

impl AsRawFd for Ring {
    fn as_raw_fd(&self) -> RawFd {
        self.events.as_raw_fd()
    }
}

/// What a running capture holds.
type Started = (Tracer, AsyncFd<Ring>, Box<dyn Sink>, Writer);

/// Attaches the programs and opens the ring buffer, becomes `-Z`'s user, opens the output, and
/// says the capture has started (to systemd too).
fn start(opts: &CaptureOptions, notifier: Option<&Notifier>) -> Result<Started, Error> {
    let mut tracer = Tracer::start(&opts.tracer)?;
    let ring = register(Ring::new(tracer.take_events()))?;
    if let Some(user) = &opts.user {
        crate::sys::become_user(user).map_err(|source| Error::BecomeUser {
            user: user.name.to_string_lossy().into_owned(),
            source,
        })?;
    }
    // The output is opened once the programs are attached, so that a capture file is only
    // created when there will be a capture; nothing stays attached if it fails (Drop).
    let info = section::capture_info(opts.tracer.snaplen, tracer.backend.name());
    let phase = Phase::start();
    let (sink, writer) = opts.output(&info)?;
    phase.done("opened the output");
    crate::timing::since_start("listening");
    announce(&tracer, opts);
    if let Some(n) = notifier {
        n.send("READY=1");
    }
    // What the start freed (the kernel's parsed BTF, tens of MB) goes back to the system now
    // that the capture has said it listens.
    crate::sys::trim_heap();
    Ok((tracer, ring, sink, writer))
}

/// Stops capturing, then writes what the kernel had already recorded (unless the output had
/// failed), and fills the summary's counts.
#[allow(
    clippy::too_many_arguments,
    reason = "the capture's parts, each borrowed from the loop that owns it"
)]
async fn detach_and_drain(
    tracer: &mut Tracer,
    ring: &mut AsyncFd<Ring>,
    packetizer: &mut Packetizer,
    sink: &mut dyn Sink,
    summary: &mut Summary,
    writer: &Writer,
    signals: &mut Signals,
    mut result: Result<(), io::Error>,
) -> Result<(), io::Error> {
    // Stop capturing, then write what the kernel had already recorded.
    // Before detaching: while the programs come off one by one, calls may enter without
    // leaving, and those are not lost messages.
    let missed_returns = tracer.missed_returns();
    tracer.detach();
    if result.is_ok() {
        result = final_drain(ring.get_mut(), packetizer, sink, summary, writer, signals).await;
    }
    let (lost_segments, lost_bytes) = tracer.lost();
    summary.packets = packetizer.packets;
    summary.lost_segments = lost_segments;
    summary.lost_bytes = lost_bytes;
    summary.missed_returns = missed_returns;
    result
}

/// Drains the ring buffer to its end. While the output is behind, the drain waits for it, as
/// the capture loop does, so that the queue stays bounded (a full 32 MiB buffer handed over at
/// once while a disk was behind made 70 MiB of peak memory); once the output has taken
/// nothing for its grace, or a second signal came, the rest is handed over at once, and what
/// the output never takes is counted unwritten.
async fn final_drain(
    ring: &mut Ring,
    packetizer: &mut Packetizer,
    sink: &mut dyn Sink,
    summary: &mut Summary,
    writer: &Writer,
    signals: &mut Signals,
) -> io::Result<()> {
    let mut bounded = true;
    loop {
        let batch = bounded.then_some(BATCH);
        match drain(ring, batch, packetizer, sink, summary)?.0 {
            Drained::Batch => {}
            Drained::All | Drained::Limit => return Ok(()),
        }
        if bounded && sink.blocked() {
            let room = stop::wait_for_room(writer, || sink.blocked(), signals).await;
            bounded = matches!(room, stop::Room::Made);
        }
    }
}

async fn capture(opts: &CaptureOptions) -> Result<(Summary, OutputEnd), Error> {
    let mut signals = Signals::new()?;
    // Made before -Z: the socket may be one only root can reach.
    let notifier = Notifier::from_env();
    let (mut tracer, mut ring, mut sink, writer) = start(opts, notifier.as_ref())?;
    let output_error =
        |source: io::Error| Error::output(Destination::name_of(opts.write.as_ref()), source);

    let start_ns = WallClock::now();
    let mut packetizer = packetizer(opts);
    let mut summary = Summary::default();
    // `-G` ends files at the flush, with the wall clock: quiet spans need it too.
    let mut timers = Timers::new(opts.rotation.as_ref().is_some_and(|r| r.seconds.is_some()))?;
    let mut stats_tick = later_ticks(Duration::from_secs(1)).await;
    let mut targets = opts.targets.clone();
    let mut container_tick = later_ticks(CONTAINER_REFRESH).await;
    let mut path_tick = later_ticks(PATH_REFRESH).await;
    let mut trim_tick = later_ticks(TRIM_INTERVAL).await;
    let mut result: Result<(), io::Error> = Ok(());

    'capture: while !packetizer.done() && !sink.done() {
        tokio::select! {
            // While the output is behind, records wait in the ring buffer (the drain timer
            // looks again every 2 ms).
            guard = ring.readable_mut(), if !sink.blocked() => {
                let mut guard = guard.map_err(Error::Ring)?;
                let found = guard.get_inner().fill();
                match drain(guard.get_inner_mut(), Some(BATCH), &mut packetizer, sink.as_mut(), &mut summary) {
                    Err(e) => {
                        result = Err(e);
                        break 'capture;
                    }
                    Ok((Drained::Limit, _)) => break 'capture,
                    // The kernel woke the loop: records came, more may follow.
                    Ok((how, handled)) => {
                        timers.wake_requested = false;
                        timers.drained(handled.max(1), found, sink.blocked())?;
                        if matches!(how, Drained::All) {
                            guard.clear_ready();
                        } else {
                            // Records remain: let the runtime poll its drivers (signals,
                            // timers) before the next batch; the fd stays ready.
                            drop(guard);
                            tokio::task::yield_now().await;
                        }
                    }
                }
            }
            expired = Timers::expired(&timers.drain) => {
                expired.map_err(Error::Ring)?;
                let found = ring.get_ref().fill();
                match timed_drain(&mut tracer, &mut timers, ring.get_mut(), &mut packetizer, sink.as_mut(), &mut summary) {
                    Ok((Drained::Limit, _)) => break 'capture,
                    Ok((_, handled)) => timers.drained(handled, found, sink.blocked())?,
                    Err(e) => {
                        result = Err(e);
                        break 'capture;
                    }
                }
            }
            _ = stats_tick.tick(), if opts.stats => print_stats(&mut tracer, &packetizer, opts.ring_bytes),
            _ = container_tick.tick(), if targets.has_containers() => targets.refresh_containers(&mut tracer),
            _ = path_tick.tick(), if targets.has_paths() => targets.refresh_paths(&mut tracer, &mut packetizer),
            _ = trim_tick.tick() => packetizer.trim(),
            () = signals.recv() => break,
            () = timers.flush.as_mut(), if timers.flush_pending => {
                timers.flushed();
                if let Err(e) = sink.flush() {
                    result = Err(e);
                    break;
                }
            }
        }
    }

    // The output's grace after the stop counts from here.
    let stopped = stop::Stopped::now(&writer);
    if let Some(n) = &notifier {
        n.send("STOPPING=1");
    }
    let result = detach_and_drain(
        &mut tracer,
        &mut ring,
        &mut packetizer,
        sink.as_mut(),
        &mut summary,
        &writer,
        &mut signals,
        result,
    )
    .await;
    let stats = Stats {
        start_ns,
        end_ns: WallClock::now(),
        received: summary.packets + summary.lost_segments + summary.missed_returns,
        dropped: summary.lost_segments + summary.missed_returns,
    };
    // Closing the hand-off lets the output thread end once it has written the rest.
    let result = result.and_then(|()| sink.finish(&stats));
    drop(sink);
    let end = stop::output_end(
        result,
        summary.packets,
        &writer,
        stopped,
        &mut signals,
        output_error,
    )
    .await;
    Ok((summary, end))
}

/// The capture loop's two timers. The drain timer: the ring buffer is drained again without
/// a wakeup from the kernel `DRAIN_INTERVAL` after a drain that found records, twice as long
/// after each that found none, at most `IDLE_DRAIN_INTERVAL`; a timerfd, not a runtime timer,
/// because the runtime's timer wheel wakes twice for a wait of 200 ms (once to move the timer
/// to a finer level), a timerfd once. The flush timer: armed at the first record not yet
/// flushed, `FLUSH_INTERVAL` later (at once when the drain that found it came after an idle
/// wait); with nothing waiting, nothing is flushed, except under `-G`, whose files end at a
/// flush.
struct Timers {
    drain: AsyncFd<std::os::fd::OwnedFd>,
    drain_wait: Duration,
    flush: std::pin::Pin<Box<tokio::time::Sleep>>,
    flush_pending: bool,
    /// Flush every `FLUSH_INTERVAL` whether or not records wait (`-G`).
    always_flush: bool,
    /// The kernel programs were asked to wake the loop at their next record, and have not
    /// yet been seen to.
    wake_requested: bool,
    /// Drains in a row that handled nothing, the output being behind.
    blocked_drains: u32,
    /// When the last drain ended.
    last_drain: std::time::Instant,
}

impl Timers {
    fn new(always_flush: bool) -> Result<Self, Error> {
        let fd = crate::sys::timer_fd().map_err(Error::Ring)?;
        crate::sys::arm_timer(&fd, DRAIN_INTERVAL).map_err(Error::Ring)?;
        Ok(Self {
            drain: register(fd)?,
            drain_wait: DRAIN_INTERVAL,
            flush: Box::pin(tokio::time::sleep(FLUSH_INTERVAL)),
            flush_pending: always_flush,
            always_flush,
            wake_requested: false,
            blocked_drains: 0,
            last_drain: std::time::Instant::now(),
        })
    }

    /// Until the drain timer `drain` expires.
    async fn expired(drain: &AsyncFd<std::os::fd::OwnedFd>) -> io::Result<()> {
        loop {
            let mut guard = drain.readable().await?;
            let expired = crate::sys::timer_expiries(guard.get_inner()) > 0;
            guard.clear_ready();
            if expired {
                return Ok(());
            }
        }
    }

    /// A drain handled `handled` records, with `found` waiting when it began (with the output
    /// `blocked`, records wait for it): sets the next drain, and arms the flush timer if
    /// records came.
    fn drained(&mut self, handled: usize, found: Fill, blocked: bool) -> Result<(), Error> {
        let waited = self.drain_wait;
        let now = std::time::Instant::now();
        let elapsed = now.duration_since(self.last_drain);
        self.last_drain = now;
        self.blocked_drains = if blocked && handled == 0 {
            self.blocked_drains + 1
        } else {
            0
        };
        self.drain_wait = if blocked && self.blocked_drains <= BLOCKED_FAST_DRAINS {
            BLOCKED_DRAIN_INTERVAL
        } else if blocked {
            DRAIN_INTERVAL
        } else if handled > 0 {
            next_busy_wait(waited, elapsed, found)
        } else {
            (self.drain_wait * 2).min(IDLE_DRAIN_INTERVAL)
        };
        if handled > 0 && !self.flush_pending {
            self.flush_pending = true;
            // Records found after an idle wait may have waited that long already: out at once.
            let delay = if waited > DRAIN_INTERVAL {
                Duration::ZERO
            } else {
                FLUSH_INTERVAL
            };
            self.flush
                .as_mut()
                .reset(tokio::time::Instant::now() + delay);
        }
        crate::sys::arm_timer(self.drain.get_ref(), self.drain_wait).map_err(Error::Ring)
    }

    /// The output was flushed.
    fn flushed(&mut self) {
        self.flush_pending = self.always_flush;
        if self.always_flush {
            self.flush
                .as_mut()
                .reset(tokio::time::Instant::now() + FLUSH_INTERVAL);
        }
    }
}

/// A timer whose first tick is one `period` from now; late ticks are not made up for.
async fn later_ticks(period: Duration) -> tokio::time::Interval {
    let mut ticks = tokio::time::interval(period);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticks.tick().await;
    ticks
}

/// The lines that say the capture has started (and, when asked or chosen automatically,
/// which backend it uses and why).
fn announce(tracer: &Tracer, opts: &CaptureOptions) {
    if opts.verbose || opts.tracer.backend.is_none() {
        let why = if tracer.skipped.is_empty() {
            String::new()
        } else {
            format!(" (skipped {})", tracer.skipped.join("; "))
        };
        eprintln!("udstrace: using the {} backend{why}", tracer.backend);
    }
    eprintln!(
        "listening on udstrace ({} backend), link-type RAW (Unix sockets as synthesised IPv6), \
         snapshot length {} bytes",
        tracer.backend, opts.tracer.snaplen
    );
}

/// `--stats`: one line a second.
fn print_stats(tracer: &mut Tracer, packetizer: &Packetizer, ring_bytes: u32) {
    let lost = tracer.lost().0 + tracer.missed_returns();
    let peak_percent = tracer.ring_peak() * 100 / u64::from(ring_bytes.max(1));
    let skipped = packetizer.lookups_skipped();
    let skipped = if skipped == 0 {
        String::new()
    } else {
        format!(
            ", the receivers of {skipped} packets not looked for in /proc (udstrace was behind)"
        )
    };
    eprintln!(
        "udstrace: {} packets, {} bytes, {lost} lost, ring buffer peak {peak_percent}% full{skipped}",
        packetizer.packets, packetizer.bytes
    );
}

/// A drain at the drain timer. One that finds nothing, with the output keeping up, makes the
/// loop idle: the kernel programs are asked to wake it at their next record (the timer then
/// only backs that up, waiting longer each time), and the ring buffer is looked at once more,
/// for a record sent just before the request, which woke nobody.
fn timed_drain(
    tracer: &mut Tracer,
    timers: &mut Timers,
    ring: &mut Ring,
    packetizer: &mut Packetizer,
    sink: &mut dyn Sink,
    summary: &mut Summary,
) -> io::Result<(Drained, usize)> {
    let (how, handled) = drain(ring, Some(BATCH), packetizer, sink, summary)?;
    if handled > 0 || sink.blocked() || matches!(how, Drained::Limit) {
        timers.wake_requested = false;
        return Ok((how, handled));
    }
    if timers.wake_requested {
        return Ok((how, handled));
    }
    tracer.request_wakeup();
    timers.wake_requested = true;
    drain(ring, Some(BATCH), packetizer, sink, summary)
}

/// How a drain ended.
enum Drained {
    /// The ring buffer is empty.
    All,
    /// The batch is done; records remain.
    Batch,
    /// The packet limit (`-c`) was reached, or the output takes no more (`-G -W`).
    Limit,
}

/// Handles records until the ring buffer is empty, `batch` records were handled or the output
/// is behind (a bounded drain only), or the packet limit is reached or the output takes no
/// more; how it ended, and how many records it handled.
fn drain(
    ring: &mut Ring,
    batch: Option<usize>,
    packetizer: &mut Packetizer,
    sink: &mut dyn Sink,
    summary: &mut Summary,
) -> io::Result<(Drained, usize)> {
    let mut handled = 0;
    loop {
        if packetizer.done() || sink.done() {
            return Ok((Drained::Limit, handled));
        }
        if batch.is_some_and(|b| handled >= b || sink.blocked()) {
            return Ok((Drained::Batch, handled));
        }
        if handled % LEVEL_EVERY == 0 {
            packetizer.set_behind(ring.behind());
        }
        let Some(item) = ring.events.next() else {
            return Ok((Drained::All, handled));
        };
        handle(&item, packetizer, sink, summary)?;
        handled += 1;
    }
}

fn handle(
    item: &[u8],
    packetizer: &mut Packetizer,
    sink: &mut dyn Sink,
    summary: &mut Summary,
) -> io::Result<()> {
    match Record::try_from(item) {
        Ok(Record::Send(seg)) => packetizer.record(&seg, sink),
        Ok(Record::Ancillary(a)) => {
            packetizer.ancillary(a);
            Ok(())
        }
        Ok(Record::Cgroup(c)) => {
            packetizer.cgroup_created(c.id, c.path);
            Ok(())
        }
        Err(e) => {
            if summary.malformed == 0 {
                eprintln!("udstrace: skipping a malformed record: {e}");
            }
            summary.malformed += 1;
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::{
        busy_wait, next_busy_wait, still_behind, Fill, DRAIN_INTERVAL, FAST_DRAIN_INTERVAL,
    };

    const MS: Duration = Duration::from_millis(1);

    fn fill(waiting: u64) -> Fill {
        Fill {
            waiting,
            size: 32 << 20,
        }
    }

    #[test]
    fn records_coming_fast_shorten_the_drain_wait() {
        // Up to a thirty-second of the buffer (1 MiB of 32) per wait: the usual wait.
        assert_eq!(busy_wait(10 * MS, fill(1 << 20)), DRAIN_INTERVAL);
        assert_eq!(busy_wait(10 * MS, fill(0)), DRAIN_INTERVAL);
        // 4 MiB in 8 ms: 1 MiB in 2 ms.
        assert_eq!(busy_wait(8 * MS, fill(4 << 20)), 2 * MS);
        // Faster than 1 MiB a millisecond: the shortest wait.
        assert_eq!(busy_wait(4 * MS, fill(32 << 20)), FAST_DRAIN_INTERVAL);
        assert_eq!(
            busy_wait(Duration::ZERO, fill(2 << 20)),
            FAST_DRAIN_INTERVAL
        );
        // Slower than the usual wait would let pile up: never longer than it.
        assert_eq!(busy_wait(100 * MS, fill(2 << 20)), DRAIN_INTERVAL);
    }

    #[test]
    fn an_early_drain_does_not_lengthen_the_drain_wait() {
        // Woken by the kernel 30 µs after a drain, a few records found: the short wait stays.
        let early = Duration::from_micros(30);
        assert_eq!(next_busy_wait(MS, early, fill(40_000)), MS);
        // But it may shorten it.
        assert_eq!(
            next_busy_wait(4 * MS, 2 * MS, fill(2 << 20)),
            FAST_DRAIN_INTERVAL
        );
        // The timer ran out and few records came: back to the usual wait.
        assert_eq!(next_busy_wait(MS, MS, fill(40_000)), DRAIN_INTERVAL);
    }

    #[test]
    fn behind_from_a_quarter_until_a_sixteenth() {
        let size = 16 << 20;
        assert!(!still_behind(false, size / 4, size));
        assert!(still_behind(false, size / 4 + 1, size));
        assert!(still_behind(true, size / 8, size), "still catching up");
        assert!(still_behind(true, size / 16 + 1, size));
        assert!(!still_behind(true, size / 16, size), "caught up");
        assert!(!still_behind(false, 0, size));
    }
}
