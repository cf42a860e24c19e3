//! `/proc/kallsyms`: the few symbols udstrace looks for, found in one pass over the text on
//! the thread that read it. The kernel takes tens of milliseconds to write its 100,000-odd
//! lines out; a pass that split every line into words took as long again at start. What
//! needs the symbols waits for them ([`Reading::get`]): the programs' direct map after the
//! object loaded, and the kprobe backend.

use std::{
    fs,
    io::{BufRead, BufReader},
    sync::{
        atomic::{AtomicI32, Ordering},
        Arc,
    },
};

use crate::{background::Background, timing::Phase};

use super::hooks::SendFunctions;

/// Where the file is.
const PATH: &str = "/proc/kallsyms";

/// The variables whose addresses udstrace needs (x86_64's direct map and page array bases).
const VARIABLES: [&str; 2] = ["page_offset_base", "vmemmap_base"];

/// What `/proc/kallsyms` said of the symbols udstrace looks for.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Symbols {
    /// Of every function a backend may hook on any kernel, those that are functions here, in
    /// the order first seen. Empty if the file could not be read.
    pub(crate) functions: Vec<&'static str>,
    /// The addresses of [`VARIABLES`], in that order (None: absent, or hidden by
    /// `kptr_restrict` as zero).
    addresses: [Option<u64>; VARIABLES.len()],
}

impl Symbols {
    /// Reads and searches `/proc/kallsyms` (nothing found if it cannot be read), a line at a
    /// time: the whole text is 5 MB or more.
    #[must_use]
    pub(crate) fn read() -> Self {
        let phase = Phase::start();
        let symbols = fs::File::open(PATH)
            .map(|f| Self::search(BufReader::with_capacity(1 << 16, f)))
            .unwrap_or_default();
        phase.done("read and searched /proc/kallsyms");
        symbols
    }

    /// Searches `/proc/kallsyms` text: each line is `address type name`, and a module's
    /// symbols carry the module's name after a tab. A read error ends the search.
    #[must_use]
    pub(crate) fn search(mut text: impl BufRead) -> Self {
        let mut symbols = Self::default();
        let mut line = String::new();
        loop {
            line.clear();
            match text.read_line(&mut line) {
                Ok(0) | Err(_) => return symbols,
                Ok(_) => symbols.add(line.trim_end_matches('\n')),
            }
        }
    }

    /// Notes the symbol of one line, if it is one of those looked for.
    fn add(&mut self, line: &str) {
        let mut words = line.splitn(3, ' ');
        let (Some(address), Some(kind), Some(rest)) = (words.next(), words.next(), words.next())
        else {
            return;
        };
        let name = rest.split(['\t', ' ']).next().unwrap_or(rest);
        // Almost every line is neither: one byte compared says so.
        if !matches!(name.as_bytes().first(), Some(b'u' | b'p' | b'v')) {
            return;
        }
        if kind.eq_ignore_ascii_case("t") {
            if let Some(f) = SendFunctions::ALL.into_iter().find(|f| *f == name) {
                if !self.functions.contains(&f) {
                    self.functions.push(f);
                }
            }
        } else if let Some(i) = VARIABLES.iter().position(|v| *v == name) {
            let address = u64::from_str_radix(address, 16).ok().filter(|&a| a != 0);
            self.addresses[i] = self.addresses[i].or(address);
        }
    }

    /// The address of `variable`, one of [`VARIABLES`] (None: absent or hidden).
    #[must_use]
    pub(crate) fn address(&self, variable: &str) -> Option<u64> {
        VARIABLES
            .iter()
            .position(|v| *v == variable)
            .and_then(|i| self.addresses[i])
    }
}

/// `/proc/kallsyms` being read and searched on a thread of its own, at the lowest priority
/// while the BTF reads beside it run (they are what the start waits for first; see
/// [`Self::hurry`]).
pub(crate) struct Reading {
    symbols: Background<Symbols>,
    /// The reading thread's id, once it has lowered its priority (0 before).
    tid: Arc<AtomicI32>,
}

impl Reading {
    /// Starts the read.
    #[must_use]
    pub(crate) fn start() -> Self {
        let tid = Arc::new(AtomicI32::new(0));
        let own = Arc::clone(&tid);
        let symbols = Background::start(move || {
            own.store(crate::sys::set_thread_nice(None, 19), Ordering::Release);
            Symbols::read()
        });
        Self { symbols, tid }
    }

    /// Gives the thread its priority back if it is still reading: once the reads the start
    /// waited for first are done, and before waiting for it, so that a busy machine cannot
    /// starve a start of it (where udstrace may raise it: root may, a process with only
    /// `CAP_BPF` and `CAP_PERFMON` may not).
    pub(crate) fn hurry(&self) {
        let tid = self.tid.load(Ordering::Acquire);
        if tid != 0 && self.symbols.running() {
            crate::sys::set_thread_nice(Some(tid), 0);
        }
    }

    /// The symbols, once the thread is done (none found if it failed).
    pub(crate) fn get(&self) -> &Symbols {
        self.hurry();
        self.symbols.get(Symbols::default)
    }
}

#[cfg(test)]
mod tests {
    use super::Symbols;

    #[test]
    fn functions_and_variables_found() {
        let text = "ffffffc0089a2f10 t unix_stream_sendmsg
ffffffc0089a3010 t unix_dgram_sendmsg
ffffffc0089a3110 d unix_seqpacket_sendmsg
0000000000000000 t unix_stream_sendpage
ffffffc0089a3210 T unix_stream_recvmsg\t[unix]
ffffffc0089a3310 T unix_stream_recvmsg_extra
ffffffff82a1b2c8 D page_offset_base
ffffffff82a1b2c0 d vmemmap_base\t[some_module]
ffffffff82a1b2d0 D vmemmap_base
garbage
ffffffc0089a2f10 t unix_stream_sendmsg
";
        let symbols = Symbols::search(text.as_bytes());
        assert_eq!(
            symbols.functions,
            [
                "unix_stream_sendmsg",
                "unix_dgram_sendmsg",
                "unix_stream_sendpage",
                "unix_stream_recvmsg"
            ]
        );
        assert_eq!(
            symbols.address("page_offset_base"),
            Some(0xffff_ffff_82a1_b2c8)
        );
        // The first one found is kept.
        assert_eq!(symbols.address("vmemmap_base"), Some(0xffff_ffff_82a1_b2c0));
        assert_eq!(symbols.address("init_task"), None);
        assert_eq!(Symbols::search(&b""[..]), Symbols::default());
    }

    #[test]
    fn hidden_addresses_are_none() {
        let symbols = Symbols::search(&b"0000000000000000 D page_offset_base\n"[..]);
        assert_eq!(symbols.address("page_offset_base"), None);
    }
}
