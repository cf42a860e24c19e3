//! The output thread. Writing to a pipe nobody reads, a paused Wireshark, a FIFO without a
//! reader (even its open) or a slow disk blocks; the capture loop must not block with it, or
//! it could not see a stop signal. So the loop only hands whole blocks (or text) to this
//! thread, which writes them in order:
//!
//! - [`Handoff`] is the sinks' [`Output`]: it queues a copy of each flushed buffer and returns.
//!   When more than [`QUEUE_LIMIT`] bytes wait, it reports itself blocked and the capture loop
//!   stops draining the ring buffer until the thread catches up: the kernel then loses
//!   messages and counts them, as it would with an output written in place.
//! - [`Writer`] is what the loop keeps: whether the thread has written everything, how many
//!   packets it has written, whether it is moving at all. After a stop the loop waits for it
//!   only while it makes progress.
//!
//! A write that fails (disk full) cuts a regular file back to the whole blocks it held, and
//! the thread ends with that error, which the next hand-off returns.
//!
//! A rotated set (`rotate.rs`) hands over its files in the same queue: [`Handoff::close`] ends
//! the file being written (the thread then runs what `-z` asks), [`Handoff::open`] goes on in
//! the next, so every file is closed only once all its blocks are in it.

use std::{
    fs::File,
    io::{self, Write},
    path::PathBuf,
    sync::{
        atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering},
        mpsc, Arc, Mutex,
    },
    thread,
};

use super::{file::Opened, pcapng::Output};
use crate::error::Error;

/// Bytes waiting for the thread beyond which the capture loop pauses.
pub(crate) const QUEUE_LIMIT: usize = 4 << 20;

/// Spent buffers the thread hands back for reuse.
const SPARE_BUFFERS: usize = 4;

/// What the thread runs once it has closed a file of a rotated set (`-z`).
pub(crate) type Then = Box<dyn FnOnce() + Send>;

/// One hand-off, done in order.
enum Chunk {
    /// Whole blocks (or text lines) holding `packets` packets.
    Blocks { bytes: Vec<u8>, packets: u64 },
    /// The file is complete: close it, then run this.
    Close(Option<Then>),
    /// Go on in the next file of a rotated set, called `name`.
    Open { out: Opened, name: PathBuf },
}

/// What the loop and the thread both see.
#[derive(Default)]
struct Shared {
    /// Bytes handed to the thread and not yet written.
    queued: AtomicUsize,
    /// Packets written.
    written: AtomicU64,
    /// Hand-offs written: moves whenever the output takes something.
    writes: AtomicU64,
    /// Everything handed was written and the output closed.
    finished: AtomicBool,
    /// The output is a regular file udstrace created or emptied.
    regular: AtomicBool,
    /// Why the thread stopped writing.
    error: Mutex<Option<io::Error>>,
}

impl Shared {
    fn fail(&self, e: io::Error) {
        *self
            .error
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(e);
    }

    /// The thread's error, again (each caller gets its own copy).
    fn error(&self) -> Option<io::Error> {
        let guard = self
            .error
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        guard.as_ref().map(Error::copy_io)
    }
}

/// Starts the thread that opens `out` (for a FIFO, waiting for its reader) and writes what the
/// [`Handoff`] gives it. `ours`: udstrace created or emptied the file, so a failed write may
/// cut it back (not standard output redirected to a file, which may hold more than ours).
/// `name`: the first file of a rotated set, named in its errors.
pub(crate) fn start(
    out: Opened,
    ours: bool,
    name: Option<PathBuf>,
) -> io::Result<(Handoff, Writer)> {
    let shared = Arc::new(Shared::default());
    let (tx, rx) = mpsc::channel::<Chunk>();
    let (spare_tx, spare_rx) = mpsc::sync_channel(SPARE_BUFFERS);
    let thread_shared = shared.clone();
    thread::Builder::new()
        .name("udstrace-output".into())
        .spawn(move || {
            let mut current = Current::default();
            if let Err(e) = current.open(out, ours, name) {
                thread_shared.fail(e);
                return;
            }
            thread_shared
                .regular
                .store(current.regular, Ordering::Release);
            if write_all(&mut current, &rx, &spare_tx, &thread_shared) {
                // Closed first: a reader sees the end of the file once `finished` says so.
                drop(current);
                thread_shared.finished.store(true, Ordering::Release);
            }
        })?;
    Ok((
        Handoff {
            tx,
            spare: spare_rx,
            shared: shared.clone(),
        },
        Writer { shared },
    ))
}

/// The file the thread writes.
#[derive(Default)]
struct Current {
    file: Option<File>,
    /// A file of a rotated set, named in its errors.
    name: Option<PathBuf>,
    /// A regular file udstrace created or emptied: a failed write cuts it back.
    regular: bool,
    /// Bytes written to it.
    written: u64,
}

impl Current {
    fn open(&mut self, out: Opened, ours: bool, name: Option<PathBuf>) -> io::Result<()> {
        self.name = name;
        let file = out.into_file().map_err(|e| self.named(e))?;
        self.regular = ours && file.metadata().is_ok_and(|m| m.is_file());
        self.written = 0;
        self.file = Some(file);
        Ok(())
    }

    fn write(&mut self, bytes: &[u8]) -> io::Result<()> {
        let Some(mut file) = self.file.as_ref() else {
            return Ok(());
        };
        if let Err(e) = file.write_all(bytes) {
            if self.regular {
                // Back to the last whole block: the file stays valid pcapng.
                let _ = file.set_len(self.written);
            }
            return Err(self.named(e));
        }
        self.written += bytes.len() as u64;
        Ok(())
    }

    /// `e`, naming the file when it is one of a rotated set.
    fn named(&self, e: io::Error) -> io::Error {
        match &self.name {
            Some(path) => Error::Output {
                path: path.clone(),
                source: e,
            }
            .into_io(),
            None => e,
        }
    }
}

/// The thread's loop: each chunk in order, until the hand-off is dropped (`true`) or a write
/// fails (`false`).
fn write_all(
    current: &mut Current,
    rx: &mpsc::Receiver<Chunk>,
    spare: &mpsc::SyncSender<Vec<u8>>,
    shared: &Shared,
) -> bool {
    for chunk in rx {
        match chunk {
            Chunk::Blocks { bytes, packets } => {
                if let Err(e) = current.write(&bytes) {
                    shared.fail(e);
                    return false;
                }
                shared.queued.fetch_sub(bytes.len(), Ordering::Relaxed);
                shared.written.fetch_add(packets, Ordering::Relaxed);
                shared.writes.fetch_add(1, Ordering::Release);
                let _ = spare.try_send(bytes);
            }
            Chunk::Close(then) => {
                current.file = None;
                if let Some(then) = then {
                    then();
                }
            }
            Chunk::Open { out, name } => {
                if let Err(e) = current.open(out, true, Some(name)) {
                    shared.fail(e);
                    return false;
                }
                shared.writes.fetch_add(1, Ordering::Release);
            }
        }
    }
    true
}

/// The sinks' side: hands buffers to the thread without ever blocking.
pub(crate) struct Handoff {
    tx: mpsc::Sender<Chunk>,
    spare: mpsc::Receiver<Vec<u8>>,
    shared: Arc<Shared>,
}

impl Handoff {
    /// Ends the file being written: the thread closes it once all its blocks are written,
    /// then runs `then`.
    pub(crate) fn close(&mut self, then: Option<Then>) -> io::Result<()> {
        self.send(Chunk::Close(then))
    }

    /// Goes on in `out`, the next file of a rotated set, called `name`.
    pub(crate) fn open(&mut self, out: Opened, name: PathBuf) -> io::Result<()> {
        self.send(Chunk::Open { out, name })
    }

    fn send(&mut self, chunk: Chunk) -> io::Result<()> {
        if let Some(e) = self.shared.error() {
            return Err(e);
        }
        self.tx.send(chunk).map_err(|_| {
            self.shared
                .error()
                .unwrap_or_else(|| io::Error::from(io::ErrorKind::BrokenPipe))
        })
    }
}

impl Output for Handoff {
    fn write_blocks(&mut self, blocks: &[u8], packets: u64) -> io::Result<()> {
        if let Some(e) = self.shared.error() {
            return Err(e);
        }
        if blocks.is_empty() {
            return Ok(());
        }
        let mut bytes = self.spare.try_recv().unwrap_or_default();
        bytes.clear();
        bytes.extend_from_slice(blocks);
        self.shared
            .queued
            .fetch_add(blocks.len(), Ordering::Relaxed);
        self.send(Chunk::Blocks { bytes, packets })
    }

    /// Hands the buffer itself to the thread, and takes a spare one (or a new one) in its
    /// place: no copy of the blocks (for 4 KiB messages the copy was 15% of udstrace's CPU).
    fn take_blocks(&mut self, blocks: &mut Vec<u8>, packets: u64) -> io::Result<()> {
        if let Some(e) = self.shared.error() {
            blocks.clear();
            return Err(e);
        }
        if blocks.is_empty() {
            return Ok(());
        }
        let mut spare = self.spare.try_recv().unwrap_or_default();
        spare.clear();
        let bytes = std::mem::replace(blocks, spare);
        self.shared.queued.fetch_add(bytes.len(), Ordering::Relaxed);
        self.send(Chunk::Blocks { bytes, packets })
    }

    /// The thread cuts a failed file back itself.
    fn truncate(&mut self, _len: u64) -> io::Result<()> {
        Ok(())
    }

    fn blocked(&self) -> bool {
        self.shared.queued.load(Ordering::Relaxed) > QUEUE_LIMIT
    }
}

/// The capture loop's view of the thread.
pub(crate) struct Writer {
    shared: Arc<Shared>,
}

impl Writer {
    /// Everything handed over was written (the hand-off must have been dropped).
    #[must_use]
    pub(crate) fn finished(&self) -> bool {
        self.shared.finished.load(Ordering::Acquire)
    }

    /// Whether the thread stopped on an error.
    #[must_use]
    pub(crate) fn failed(&self) -> bool {
        self.shared
            .error
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .is_some()
    }

    /// The error the thread stopped on.
    #[must_use]
    pub(crate) fn error(&self) -> Option<io::Error> {
        self.shared.error()
    }

    /// A count that moves whenever the output takes something.
    #[must_use]
    pub(crate) fn progress(&self) -> u64 {
        self.shared.writes.load(Ordering::Acquire)
    }

    /// Whether everything handed over so far has been written: the output is keeping up.
    #[must_use]
    pub(crate) fn idle(&self) -> bool {
        self.shared.queued.load(Ordering::Acquire) == 0
    }

    /// Packets written.
    #[must_use]
    pub(crate) fn written(&self) -> u64 {
        self.shared.written.load(Ordering::Relaxed)
    }

    /// Whether the output is a regular file udstrace created or emptied.
    #[must_use]
    pub(crate) fn regular_file(&self) -> bool {
        self.shared.regular.load(Ordering::Acquire)
    }
}

#[cfg(test)]
mod tests {
    use std::{
        io::Read,
        time::{Duration, Instant},
    };

    use super::*;

    /// The output thread writing into a pipe's write end.
    fn to_pipe(w: std::io::PipeWriter) -> (Handoff, Writer) {
        start(
            Opened::Ready(File::from(std::os::fd::OwnedFd::from(w))),
            false,
            None,
        )
        .unwrap()
    }

    fn wait_until(what: impl Fn() -> bool) {
        let start = Instant::now();
        while !what() {
            assert!(start.elapsed() < Duration::from_secs(10), "timed out");
            thread::sleep(Duration::from_millis(1));
        }
    }

    /// Everything handed over arrives in order; the writer says when it is done.
    #[test]
    fn writes_in_order_and_finishes() {
        let (mut r, w) = std::io::pipe().unwrap();
        let (mut handoff, writer) = to_pipe(w);
        let reader = thread::spawn(move || {
            let mut v = Vec::new();
            r.read_to_end(&mut v).unwrap();
            v
        });
        handoff.write_blocks(b"one ", 1).unwrap();
        handoff.write_blocks(b"", 0).unwrap();
        // A buffer handed over whole comes back empty; a spare the thread returned, reused
        // for the next one, brings none of its old bytes.
        let mut buf = b"two ".to_vec();
        handoff.take_blocks(&mut buf, 2).unwrap();
        assert!(buf.is_empty());
        thread::sleep(Duration::from_millis(20));
        buf.extend_from_slice(b"three");
        handoff.take_blocks(&mut buf, 3).unwrap();
        assert!(buf.is_empty());
        drop(handoff);
        wait_until(|| writer.finished());
        assert_eq!(writer.written(), 6);
        assert_eq!(reader.join().unwrap(), b"one two three");
    }

    /// A pipe nobody reads: hand-offs never block, the queue reports itself blocked past its
    /// limit, the writer stops making progress and counts what it did not write.
    #[test]
    fn blocked_pipe_never_blocks_the_handoff() {
        let (_r, w) = std::io::pipe().unwrap();
        let (mut handoff, writer) = to_pipe(w);
        let block = vec![7u8; 1 << 20];
        let mut n = 0;
        while !handoff.blocked() {
            handoff.write_blocks(&block, 10).unwrap();
            n += 1;
            assert!(n < 100, "never blocked");
        }
        assert!(n >= QUEUE_LIMIT >> 20);
        // At most the pipe's buffer went through: not one whole megabyte.
        thread::sleep(Duration::from_millis(50));
        assert_eq!(writer.progress(), 0);
        assert_eq!(writer.written(), 0);
        assert!(!writer.finished());
    }

    /// A reader that goes away: the error comes back from the next hand-off.
    #[test]
    fn broken_pipe_comes_back() {
        let (r, w) = std::io::pipe().unwrap();
        drop(r);
        let (mut handoff, writer) = to_pipe(w);
        handoff.write_blocks(b"x", 1).unwrap();
        wait_until(|| writer.failed());
        let e = handoff.write_blocks(b"y", 1).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::BrokenPipe);
        assert_eq!(writer.written(), 0);
    }
}
