//! The ring buffer the programs write their records to, read in place.
//!
//! A `BPF_MAP_TYPE_RINGBUF` map lays out a page holding the consumer position, a page holding
//! the producer position, then the data; the kernel maps the data twice in a row in its own
//! address space, so that a program writes a record in one piece across the end
//! (kernel/bpf/ringbuf.c). A reader may map the data twice too and never see a record wrap,
//! as libbpf and aya do. udstrace maps it once: the resident size of a mapping counts the
//! pages mapped, so a second mapping doubled the ring buffer's share of udstrace's resident
//! memory (a 16 MiB buffer counted 32 MiB), for one record per turn of the buffer that wraps.
//! That record's two parts are put together in a buffer of the reader's own.
//!
//! Each record starts with an 8-byte header at an 8-byte-aligned position: its length, with
//! the busy bit set while the program writes it and the discard bit set if it gave the space
//! up, then the page offset the kernel uses to find the map. The reader reads a record once its
//! busy bit is clear, and gives its space back by moving the consumer position past it.
//!
//! The two positions are each alone on a page, and each is written by one side and read by the
//! other: every write takes the cache line from the other side's CPU, whose next read misses.
//! So the reader reads the producer position only when it has read every record up to the
//! one it last saw, and gives space back in steps ([`publish_due`]) and whenever it has read
//! all there is, not record by record: with the position written after each record, the
//! programs' first look at it (`bpf_ringbuf_query`) cost a 4 KiB message about 35 ns
//! (`perf`, one-thread loop: 1.34% of the samples).

use std::{
    cell::Cell,
    io,
    ops::Deref,
    os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd},
    ptr::NonNull,
    sync::atomic::{AtomicU32, AtomicU64, Ordering},
};

use aya::maps::{Map, MapData};

use super::mapped::{map_shared, page_size};
use crate::error::Error;

/// Set in a record's length while its program writes it.
const BUSY: u32 = 1 << 31;
/// Set in a record's length when its program gave the space up.
const DISCARD: u32 = 1 << 30;
/// A record's header: its length and flags, and a page offset.
const HEADER: u64 = 8;

/// The ring buffer map, mapped into this process.
pub(crate) struct EventRing {
    /// The consumer position's page, writable.
    consumer: NonNull<AtomicU64>,
    /// The producer position's page, then the data once, read-only.
    producer: NonNull<AtomicU64>,
    page: usize,
    /// The data's size in bytes (a power of two).
    size: u64,
    /// A record that wraps around the end of the data, put together.
    joined: Vec<u8>,
    /// Where the reader is: past every record handed out and dropped.
    read: Cell<u64>,
    /// The consumer position last given to the kernel.
    published: u64,
    /// The producer position last read.
    produced: u64,
    /// The map, kept open for as long as it is mapped.
    map: MapData,
}

impl EventRing {
    /// Maps `map`, a ring buffer map, named `name` for errors.
    pub(crate) fn new(map: Option<Map>, name: &'static str) -> Result<Self, Error> {
        let Some(Map::RingBuf(map)) = map else {
            return Err(Error::MissingMap(name));
        };
        let cannot = |e: io::Error| Error::Load(format!("{name}: cannot map it into memory: {e}"));
        // The kernel's size, not the one asked for: the mapping must not pass the data's end.
        let size = map
            .info()
            .map_err(|e| cannot(io::Error::other(e)))?
            .max_entries();
        if !size.is_power_of_two() {
            return Err(cannot(io::Error::other(format!("a size of {size} bytes"))));
        }
        let page = page_size();
        let fd = map.fd().as_fd().as_raw_fd();
        let consumer =
            map_shared(fd, page, 0, libc::PROT_READ | libc::PROT_WRITE).map_err(cannot)?;
        let producer = match map_shared(fd, page + size as usize, page, libc::PROT_READ) {
            Ok(p) => p,
            Err(e) => {
                // SAFETY: the mapping just made, referenced nowhere.
                unsafe { libc::munmap(consumer.as_ptr().cast(), page) };
                return Err(cannot(e));
            }
        };
        // SAFETY: as in `consumer()`, for the mapping just made.
        let start = unsafe { consumer.cast::<AtomicU64>().as_ref() }.load(Ordering::Acquire);
        Ok(Self {
            consumer: consumer.cast(),
            producer: producer.cast(),
            page,
            size: u64::from(size),
            joined: Vec::new(),
            read: Cell::new(start),
            published: start,
            produced: start,
            map,
        })
    }

    fn consumer(&self) -> &AtomicU64 {
        // SAFETY: the start of a page of a mapping that lives as long as `self`: aligned; only
        // this reader writes it, the kernel reads it.
        unsafe { self.consumer.as_ref() }
    }

    fn producer(&self) -> &AtomicU64 {
        // SAFETY: as for the consumer position; the kernel updates it atomically.
        unsafe { self.producer.as_ref() }
    }

    /// The data's first byte.
    fn data(&self) -> *const u8 {
        // SAFETY: the data follows the producer's page in the mapping.
        unsafe { self.producer.as_ptr().cast::<u8>().add(self.page) }
    }

    /// Bytes written by the programs and not yet read (records and their headers), at most
    /// the buffer's size.
    pub(crate) fn waiting(&self) -> u64 {
        self.producer()
            .load(Ordering::Acquire)
            .saturating_sub(self.read.get())
            .min(self.size)
    }

    /// Gives the space up to `at` back to the programs.
    fn publish(&mut self, at: u64) {
        if at != self.published {
            self.consumer().store(at, Ordering::Release);
            self.published = at;
        }
    }

    /// The buffer's size in bytes.
    pub(crate) fn size(&self) -> u64 {
        self.size
    }

    /// The next record, if one is complete; its space is given back when it is dropped.
    /// Records the programs discarded are passed over.
    pub(crate) fn next(&mut self) -> Option<Event<'_>> {
        let mask = self.size - 1;
        let mut at = self.read.get();
        if publish_due(at, self.published, self.size) {
            self.publish(at);
        }
        loop {
            if at >= self.produced {
                self.produced = self.producer().load(Ordering::Acquire);
                if at >= self.produced {
                    // All read: all given back.
                    self.publish(at);
                    return None;
                }
            }
            let header = self.data().wrapping_add((at & mask) as usize);
            // SAFETY: records and so headers start 8-byte aligned inside the data, which is
            // page-aligned; the producer position has passed this header, which the kernel
            // writes atomically (busy until committed).
            #[expect(clippy::cast_ptr_alignment, reason = "headers are 8-byte aligned")]
            let word = unsafe { &*header.cast::<AtomicU32>() }.load(Ordering::Acquire);
            match Header::of(word, at) {
                Header::Busy => {
                    self.publish(at);
                    return None;
                }
                Header::Discarded { next } => {
                    self.read.set(next);
                    at = next;
                }
                Header::Record { len, next } => {
                    return Some(self.event((at + HEADER) & mask, len, next));
                }
            }
        }
    }

    /// The record of `len` bytes at data offset `start`, to be given back up to `next`.
    fn event(&mut self, start: u64, len: u64, next: u64) -> Event<'_> {
        // A record is at most the buffer's size less its header (the kernel refuses more).
        let len = len.min(self.size) as usize;
        let start = start as usize;
        let first = before_end(start, len, self.size as usize);
        let data = self.data();
        // SAFETY: the record's bytes, committed by the kernel (its busy bit is clear) and not
        // written again until the consumer position passes them: `first` bytes from `start`,
        // and the rest from the data's start.
        let (head, tail) = unsafe {
            (
                std::slice::from_raw_parts(data.add(start), first),
                std::slice::from_raw_parts(data, len - first),
            )
        };
        if !tail.is_empty() {
            self.joined.clear();
            self.joined.extend_from_slice(head);
            self.joined.extend_from_slice(tail);
        }
        let this = &*self;
        Event {
            bytes: if tail.is_empty() { head } else { &this.joined },
            read: &this.read,
            next,
        }
    }
}

impl AsFd for EventRing {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.map.fd().as_fd()
    }
}

impl AsRawFd for EventRing {
    fn as_raw_fd(&self) -> RawFd {
        self.as_fd().as_raw_fd()
    }
}

impl Drop for EventRing {
    fn drop(&mut self) {
        // SAFETY: the mappings made in `new`, no longer referenced.
        unsafe {
            libc::munmap(self.consumer.as_ptr().cast(), self.page);
            libc::munmap(
                self.producer.as_ptr().cast(),
                self.page + self.size as usize,
            );
        }
    }
}

/// One record, read in place; once it is dropped, its space is the reader's to give back to
/// the programs.
pub(crate) struct Event<'a> {
    bytes: &'a [u8],
    read: &'a Cell<u64>,
    /// The position past this record.
    next: u64,
}

impl Deref for Event<'_> {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        self.bytes
    }
}

impl Drop for Event<'_> {
    fn drop(&mut self) {
        self.read.set(self.next);
    }
}

/// Whether the reader, at `read`, gives the space it has read back now, having given it back
/// up to `published` in a buffer of `size` bytes: once it is a sixty-fourth of the buffer, at
/// most 256 KiB (the programs see a buffer that much fuller than it is, at most).
fn publish_due(read: u64, published: u64, size: u64) -> bool {
    read - published >= (size / 64).min(256 << 10)
}

/// What a record's header word says, for a record at position `at`.
#[derive(Debug, PartialEq, Eq)]
enum Header {
    /// Its program is still writing it: it and all after it wait.
    Busy,
    /// Given up by its program: the next record is at `next`.
    Discarded { next: u64 },
    /// `len` bytes after the header; the next record is at `next`.
    Record { len: u64, next: u64 },
}

impl Header {
    fn of(word: u32, at: u64) -> Self {
        if word & BUSY != 0 {
            return Self::Busy;
        }
        let len = u64::from(word & !(BUSY | DISCARD));
        // Records start 8-byte aligned.
        let next = at + (HEADER + len).next_multiple_of(8);
        if word & DISCARD != 0 {
            Self::Discarded { next }
        } else {
            Self::Record { len, next }
        }
    }
}

/// How many of a record's `len` bytes from data offset `start` lie before the end of data of
/// `size` bytes (the rest are at its start).
fn before_end(start: usize, len: usize, size: usize) -> usize {
    len.min(size - start)
}

#[cfg(test)]
mod tests {
    use super::{before_end, publish_due, Header, BUSY, DISCARD};

    #[test]
    fn space_is_given_back_in_steps() {
        let mib = 1 << 20;
        // 32 MiB: every 256 KiB.
        assert!(!publish_due(mib + (256 << 10) - 8, mib, 32 * mib));
        assert!(publish_due(mib + (256 << 10), mib, 32 * mib));
        // 1 MiB: every sixty-fourth, 16 KiB.
        assert!(!publish_due(4096, 0, mib));
        assert!(publish_due(16 << 10, 0, mib));
        assert!(!publish_due(5, 5, mib));
    }

    #[test]
    fn headers_say_busy_discarded_or_where_the_next_record_is() {
        assert_eq!(Header::of(BUSY | 0x64, 0), Header::Busy);
        assert_eq!(Header::of(BUSY | DISCARD | 0x64, 0), Header::Busy);
        // 8 bytes of header, 13 of record, 3 of padding.
        assert_eq!(Header::of(13, 64), Header::Record { len: 13, next: 88 });
        assert_eq!(Header::of(16, 64), Header::Record { len: 16, next: 88 });
        assert_eq!(
            Header::of(DISCARD | 0xd, 64),
            Header::Discarded { next: 88 }
        );
        assert_eq!(Header::of(0, 8), Header::Record { len: 0, next: 16 });
        // Positions only grow: past the data's size they are taken modulo it by the reader.
        assert_eq!(
            Header::of(4096, (1 << 40) - 8),
            Header::Record {
                len: 4096,
                next: (1 << 40) + 4096
            }
        );
    }

    #[test]
    fn a_record_runs_past_the_end_in_two_parts() {
        assert_eq!(before_end(0, 100, 4096), 100);
        assert_eq!(before_end(3996, 100, 4096), 100, "up to the end exactly");
        assert_eq!(before_end(4000, 100, 4096), 96);
        assert_eq!(before_end(4088, 4096, 4096), 8);
    }
}
