//! Loads the kernel programs, configures them for this kernel and this capture, attaches
//! them with a backend, and hands out the maps the capture loop reads.

use aya::{Ebpf, EbpfLoader};
use udstrace_common::{
    counter,
    filter::{self, PathKey, PathName},
    maps::{self, global},
    KernelLayout, SockType,
};

use crate::{
    error::{one_line, Error},
    kernel::{self, layout, KernelError, KernelFacts},
    timing::Phase,
};

pub(crate) mod backend;
pub(crate) mod mapped;
pub(crate) mod record;
pub(crate) mod ring;

use backend::BackendKind;
use mapped::MappedArray;
use ring::EventRing;

/// The program that adds forked children to the process filter (`--follow`).
const FORK: &str = "sched_process_fork";
/// The program that tells userspace of each new cgroup, so that short-lived containers are
/// named.
const CGROUP_MKDIR: &str = "cgroup_mkdir";

/// The reference programs `cargo xtask bench` measures the capture against (`udstrace
/// reference`, `udstrace-ebpf/src/reference.rs`): an empty program on the tracepoint backend's
/// hook, and one that records only the time and the payload.
pub(crate) const REFERENCE_EMPTY: &str = "reference_empty";
pub(crate) const REFERENCE_FLOOR: &str = "reference_floor";

/// The kernel object, built by `build.rs` from `udstrace-ebpf`.
static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/udstrace"));

/// What to capture.
#[derive(Debug, Clone)]
pub(crate) struct TracerConfig {
    /// Backend to use, or `None` for the first that works.
    pub(crate) backend: Option<BackendKind>,
    /// Largest payload copied per message.
    pub(crate) snaplen: u32,
    /// Only these processes, if not empty.
    pub(crate) pids: Vec<u32>,
    /// Ring buffer size in bytes (a power of two, multiple of the page size).
    pub(crate) ring_bytes: u32,
    /// Only these command names, if not empty (checked in the kernel).
    pub(crate) comms: Vec<String>,
    /// Only these users, if not empty (checked in the kernel).
    pub(crate) uids: Vec<u32>,
    /// Only this socket type (checked in the kernel).
    pub(crate) sock_type: Option<SockType>,
    /// Capture the children the `pids` fork from now on too.
    pub(crate) follow: bool,
    /// Capture what processes read from Unix sockets too.
    pub(crate) recv: bool,
    /// Only senders in these cgroups (`Some`, even empty: the containers asked for may start
    /// later), checked in the kernel.
    pub(crate) cgroups: Option<Vec<u64>>,
    /// `--path` in the kernel (`Some` when every value is a path or `@name`, not a glob):
    /// socket files and bound names.
    pub(crate) paths: Option<(Vec<PathKey>, Vec<PathName>)>,
}

impl TracerConfig {
    /// A configuration that captures everything with the defaults.
    #[must_use]
    pub(crate) fn new(ring_bytes: u32, snaplen: u32) -> Self {
        Self {
            backend: None,
            snaplen,
            pids: Vec::new(),
            ring_bytes,
            comms: Vec::new(),
            uids: Vec::new(),
            sock_type: None,
            follow: false,
            recv: false,
            cgroups: None,
            paths: None,
        }
    }

    /// The `PID_LIST` global, when the processes fit it (and none will be added: no
    /// `--follow`).
    fn pid_list(&self) -> Option<[u32; filter::PID_LIST_MAX]> {
        if self.follow || self.pids.is_empty() || self.pids.len() > filter::PID_LIST_MAX {
            return None;
        }
        let mut list = [self.pids[0]; filter::PID_LIST_MAX];
        list[..self.pids.len()].copy_from_slice(&self.pids);
        Some(list)
    }

    /// The `FILTERS` bits of the kernel programs.
    fn filter_bits(&self) -> u32 {
        let mut bits = 0;
        if self.pid_list().is_some() {
            bits |= filter::PID_LIST;
        } else if !self.pids.is_empty() {
            bits |= filter::PIDS;
            if self.follow {
                bits |= filter::FOLLOW;
            }
        }
        if !self.comms.is_empty() {
            bits |= filter::COMMS;
        }
        if !self.uids.is_empty() {
            bits |= filter::UIDS;
        }
        if self.cgroups.is_some() {
            bits |= filter::CGROUPS;
        }
        if self.paths.is_some() {
            bits |= filter::PATHS;
        }
        bits
    }
}

/// A command name as the kernel keeps it: at most 15 bytes, NUL-padded to 16.
#[must_use]
pub(crate) fn comm_key(name: &str) -> [u8; 16] {
    let mut key = [0; 16];
    let bytes = name.as_bytes();
    let n = bytes.len().min(15);
    key[..n].copy_from_slice(&bytes[..n]);
    key
}

/// Whether a backend works on this kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BackendState {
    /// Loads and attaches.
    Ok,
    /// The kernel lacks what it needs, or refuses that kind of program outright.
    Unsupported,
    /// Should work here but failed: a defect.
    Error,
}

impl BackendState {
    #[must_use]
    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Unsupported => "unsupported",
            Self::Error => "error",
        }
    }
}

/// One line of `udstrace backends`.
#[derive(Debug, Clone)]
pub(crate) struct BackendStatus {
    pub(crate) kind: BackendKind,
    pub(crate) state: BackendState,
    pub(crate) detail: String,
}

impl BackendStatus {
    fn unsupported(kind: BackendKind, reason: &str) -> Self {
        Self {
            kind,
            state: BackendState::Unsupported,
            detail: reason.to_string(),
        }
    }
}

/// Attached programs and their maps.
pub(crate) struct Tracer {
    /// Holds the programs; dropping it detaches them.
    ebpf: Option<Ebpf>,
    pub(crate) backend: BackendKind,
    /// Why other backends were passed over, for the user.
    pub(crate) skipped: Vec<String>,
    events: Option<EventRing>,
    counters: MappedArray,
    /// `WAKE_REQUEST`: set when the capture loop goes idle.
    wake: MappedArray,
}

impl Tracer {
    pub(crate) fn start(config: &TracerConfig) -> Result<Self, Error> {
        let Prepared {
            layout,
            facts,
            mut loader,
        } = prepare()?;
        for &pid in &config.pids {
            if !std::path::Path::new(&format!("/proc/{pid}")).exists() {
                return Err(Error::NoSuchProcess(pid));
            }
        }

        let candidates: Vec<BackendKind> = match config.backend {
            Some(kind) => vec![kind],
            None => BackendKind::ALL.to_vec(),
        };
        let mut skipped = Vec::new();
        let mut last_log = String::new();
        // The loaded object, kept for the next backend when one failed with none of its
        // programs loaded (so none attached: the maps are as new). Loading it costs tens of
        // milliseconds, most of them the ring buffer's memory.
        let mut unused: Option<Ebpf> = None;
        for kind in candidates {
            let backend = kind.backend();
            if let Some(reason) = backend.unsupported(&facts) {
                skipped.push(format!("{kind}: {reason}"));
                continue;
            }
            let phase = Phase::start();
            let mut ebpf = match unused.take() {
                Some(ebpf) => ebpf,
                None => load(config, &layout, &facts, &mut loader)?,
            };
            let attached = backend.attach(&mut ebpf, &facts, config.recv);
            phase.done(format_args!(
                "{} the {kind} backend",
                if attached.is_ok() {
                    "attached"
                } else {
                    "tried"
                }
            ));
            match attached {
                Ok(()) => {
                    // The kernel's parsed BTF (tens of MB) goes before the capture allocates
                    // its own memory; the caller hands it back to the system once it has said
                    // it listens (`sys::trim_heap`, 5 ms).
                    drop(facts);
                    return Self::finish(ebpf, kind, skipped, config);
                }
                Err(e) => {
                    if let Error::Attach { log, .. } = &e {
                        last_log.clone_from(log);
                    }
                    skipped.push(format!("{kind}: {e}"));
                    if ebpf.programs().all(|(_, p)| p.fd().is_err()) {
                        unused = Some(ebpf);
                    }
                }
            }
        }
        match config.backend {
            Some(kind) => Err(Error::BackendUnsupported {
                backend: kind.name(),
                release: facts.release,
                reason: skipped
                    .join("; ")
                    .trim_start_matches(&format!("{kind}: "))
                    .to_string(),
                log: last_log,
            }),
            None => Err(Error::NoBackend {
                release: facts.release,
                reasons: skipped.join("; "),
                log: last_log,
            }),
        }
    }

    /// Loads reference program `name` ([`REFERENCE_EMPTY`] or [`REFERENCE_FLOOR`]) alone and
    /// attaches it to `sock:sock_send_length`, with a ring buffer of `config.ring_bytes`.
    pub(crate) fn start_reference(
        name: &'static str,
        config: &TracerConfig,
    ) -> Result<Self, Error> {
        let Prepared {
            layout,
            facts,
            mut loader,
        } = prepare()?;
        let kind = BackendKind::Tracepoint;
        if let Some(reason) = kind.backend().unsupported(&facts) {
            return Err(Error::BackendUnsupported {
                backend: kind.name(),
                release: facts.release,
                reason,
                log: String::new(),
            });
        }
        let mut ebpf = load(config, &layout, &facts, &mut loader)?;
        backend::tracepoint::attach_program(
            &mut ebpf,
            name,
            kernel::hooks::SEND_TRACEPOINT,
            &facts,
        )?;
        Self::finish(ebpf, kind, Vec::new(), config)
    }

    /// Tries every backend on this kernel, one after the other, and detaches again: what
    /// `udstrace backends` prints.
    pub(crate) fn probe_backends(config: &TracerConfig) -> Result<Vec<BackendStatus>, Error> {
        let Prepared {
            layout,
            facts,
            mut loader,
        } = prepare()?;
        let mut out = Vec::new();
        for kind in BackendKind::ALL {
            out.push(probe_backend(kind, config, &layout, &facts, &mut loader)?);
        }
        Ok(out)
    }

    fn finish(
        mut ebpf: Ebpf,
        backend: BackendKind,
        skipped: Vec<String>,
        config: &TracerConfig,
    ) -> Result<Self, Error> {
        // `-p` with few processes and no `--follow` compares them in the program instead.
        if config.filter_bits() & filter::PIDS != 0 {
            fill(&mut ebpf, maps::PID_FILTER, config.pids.iter().copied())?;
        }
        fill(&mut ebpf, maps::UID_FILTER, config.uids.iter().copied())?;
        fill(
            &mut ebpf,
            maps::COMM_FILTER,
            config.comms.iter().map(|c| comm_key(c)),
        )?;
        if let Some(ids) = &config.cgroups {
            fill(&mut ebpf, maps::CGROUP_FILTER, ids.iter().copied())?;
        }
        if let Some((files, names)) = &config.paths {
            fill(&mut ebpf, maps::PATH_FILTER, files.iter().copied())?;
            fill(&mut ebpf, maps::PATH_NAME_FILTER, names.iter().copied())?;
        }
        if config.follow {
            let fork: &mut aya::programs::RawTracePoint = ebpf
                .program_mut(FORK)
                .ok_or(Error::MissingProgram(FORK))?
                .try_into()
                .map_err(|e| Error::attach(FORK, e))?;
            backend::timed("loaded", FORK, || fork.load()).map_err(|e| Error::attach(FORK, e))?;
            backend::timed("attached", FORK, || fork.attach(FORK))
                .map_err(|e| Error::attach(FORK, e))?;
        }
        attach_cgroup_mkdir(&mut ebpf);
        let events = EventRing::new(ebpf.take_map(maps::EVENTS), maps::EVENTS)?;
        let counters = MappedArray::new(
            ebpf.take_map(maps::COUNTERS),
            maps::COUNTERS,
            counter::COUNT,
        )?;
        let wake = MappedArray::new(ebpf.take_map(maps::WAKE_REQUEST), maps::WAKE_REQUEST, 1)?;
        Ok(Self {
            ebpf: Some(ebpf),
            backend,
            skipped,
            events: Some(events),
            counters,
            wake,
        })
    }

    /// The ring buffer the programs write to; once.
    pub(crate) fn take_events(&mut self) -> EventRing {
        self.events.take().expect("the ring buffer is taken once")
    }

    /// Adds cgroups to the kernel's container filter (containers that started).
    pub(crate) fn add_cgroups(&mut self, ids: &[u64]) -> Result<(), Error> {
        match self.ebpf.as_mut() {
            Some(ebpf) => fill(ebpf, maps::CGROUP_FILTER, ids.iter().copied()),
            None => Ok(()),
        }
    }

    /// Adds socket files to the kernel's path filter (files that appeared or were replaced).
    pub(crate) fn add_path_files(&mut self, files: &[PathKey]) -> Result<(), Error> {
        match self.ebpf.as_mut() {
            Some(ebpf) => fill(ebpf, maps::PATH_FILTER, files.iter().copied()),
            None => Ok(()),
        }
    }

    /// Asks the programs to wake the capture loop at the next record they send, rather than
    /// leave it for the drain timer (see `maps::WAKE_REQUEST`).
    pub(crate) fn request_wakeup(&mut self) {
        self.wake.set(0, 1);
    }

    /// Detaches every program. Records already in the ring buffer stay readable.
    pub(crate) fn detach(&mut self) {
        self.ebpf = None;
    }

    /// The most bytes waiting in the ring buffer since the last call; resets it.
    pub(crate) fn ring_peak(&mut self) -> u64 {
        // Not atomic with the programs' updates: a peak noted in between is missed, for one
        // interval.
        let peak = self.counters.get(counter::RING_PEAK);
        self.counters.set(counter::RING_PEAK, 0);
        peak
    }

    /// Segments and payload bytes the kernel programs could not deliver (ring buffer full).
    #[must_use]
    pub(crate) fn lost(&self) -> (u64, u64) {
        let get = |i| self.counters.get(i);
        (get(counter::LOST_SEGMENTS), get(counter::LOST_BYTES))
    }

    /// Sends and receives whose entry the programs saw and whose return they did not (kprobe
    /// backend: the kernel ran out of kretprobe instances for calls in flight).
    #[must_use]
    pub(crate) fn missed_returns(&self) -> u64 {
        self.counters.get(counter::MISSED_RETURNS)
    }
}

/// What every load needs first: the kernel's layout and facts, and aya's object loader.
struct Prepared {
    layout: KernelLayout,
    facts: KernelFacts,
    /// A loader made while the facts were read (`EbpfLoader::new()` parses the kernel's BTF,
    /// tens of milliseconds), for the first load; later loads make their own.
    loader: Option<EbpfLoader<'static>>,
}

/// The privileges, the kernel's BTF, its layout and facts, and a loader.
fn prepare() -> Result<Prepared, Error> {
    kernel::check_privileges()?;
    kernel::check_btf()?;
    crate::sys::raise_memlock();
    crate::sys::pin_mmap_threshold();
    // Three independent reads, each tens of milliseconds, at once: /proc/kallsyms (read and
    // searched; waited for only once the object is loaded) and aya's object loader (its own
    // parse of the kernel's BTF) on threads of their own, the layout here.
    let loader = std::thread::spawn(|| {
        let phase = Phase::start();
        let loader = EbpfLoader::new();
        phase.done("made aya's object loader (its own BTF parse)");
        loader
    });
    let symbols = kernel::kallsyms::Reading::start();
    let phase = Phase::start();
    let btf = kernel::btf::Btf::from_file(std::path::Path::new(kernel::VMLINUX_BTF))
        .map_err(|e| KernelError::Btf(e.to_string()))?;
    let arch = kernel::arch::Arch::running().map_err(KernelError::from)?;
    let layout = layout::kernel_layout(&btf, arch).map_err(KernelError::from)?;
    phase.done("read the kernel layout from BTF");
    let facts = KernelFacts::read(btf, symbols)?;
    let loader = loader.join().ok();
    facts.hurry_symbols();
    Ok(Prepared {
        layout,
        facts,
        loader,
    })
}

/// Puts `keys` into the hash map `name` (value 1: present).
fn fill<K: aya::Pod>(
    ebpf: &mut Ebpf,
    name: &'static str,
    keys: impl Iterator<Item = K>,
) -> Result<(), Error> {
    let mut map: aya::maps::HashMap<_, K, u8> = ebpf
        .map_mut(name)
        .ok_or(Error::MissingMap(name))?
        .try_into()
        .map_err(|_| Error::MissingMap(name))?;
    for key in keys {
        map.insert(key, 1, 0).map_err(|e| Error::FilterMap {
            map: name,
            reason: one_line(&e),
        })?;
    }
    Ok(())
}

/// Whether backend `kind` loads and attaches here (dropped again at once).
fn probe_backend(
    kind: BackendKind,
    config: &TracerConfig,
    layout: &KernelLayout,
    facts: &KernelFacts,
    loader: &mut Option<EbpfLoader<'static>>,
) -> Result<BackendStatus, Error> {
    let backend = kind.backend();
    if let Some(reason) = backend.unsupported(facts) {
        return Ok(BackendStatus::unsupported(kind, &reason));
    }
    let mut ebpf = load(config, layout, facts, loader)?;
    Ok(match backend.attach(&mut ebpf, facts, config.recv) {
        Ok(()) => BackendStatus {
            kind,
            state: BackendState::Ok,
            detail: String::new(),
        },
        Err(e @ Error::Refused { .. }) => BackendStatus::unsupported(kind, &e.to_string()),
        Err(e) => BackendStatus {
            kind,
            state: BackendState::Error,
            detail: e.to_string(),
        },
    })
}

/// Loads the object with `config`'s globals and map sizes, with `loader` if there is one
/// (taken) or a new one.
fn load(
    config: &TracerConfig,
    layout: &KernelLayout,
    facts: &KernelFacts,
    loader: &mut Option<EbpfLoader<'static>>,
) -> Result<Ebpf, Error> {
    let cpus = aya::util::nr_cpus().map_err(|(what, e)| Error::Load(format!("{what}: {e}")))?;
    let filters = config.filter_bits();
    let type_mask: u32 = config.sock_type.map_or(0, |t| 1 << (t as u32));
    let pid_list = config.pid_list().unwrap_or_default();
    let self_tgid = std::process::id();
    let use_task_pt_regs = u32::from(facts.has_task_pt_regs);
    // Wake userspace once an eighth of the buffer waits; below that it drains on its timer.
    let wakeup_bytes = u64::from(config.ring_bytes / 8);
    let phase = Phase::start();
    // `new()` parses the kernel's BTF again (aya 0.14 has no loader without): the first load's
    // loader was made beside the other reads (`prepare`); a refused backend leaves its object
    // to the next, so a second one is rare.
    let mut loader: EbpfLoader<'_> = loader.take().unwrap_or_default();
    // A filter that is off needs no room: its hash map gets one entry (a preallocated hash
    // map's memory is allocated and zeroed when the object loads).
    for (bit, map) in [
        (filter::PIDS, maps::PID_FILTER),
        (filter::UIDS, maps::UID_FILTER),
        (filter::COMMS, maps::COMM_FILTER),
        (filter::CGROUPS, maps::CGROUP_FILTER),
        (filter::PATHS, maps::PATH_FILTER),
        (filter::PATHS, maps::PATH_NAME_FILTER),
    ] {
        if filters & bit == 0 {
            loader.map_max_entries(map, 1);
        }
    }
    let ebpf = loader
        .override_global(global::LAYOUT, layout, true)
        .override_global(global::SELF_TGID, &self_tgid, true)
        .override_global(global::SNAPLEN, &config.snaplen, true)
        .override_global(global::FILTERS, &filters, true)
        .override_global(global::TYPE_MASK, &type_mask, true)
        .override_global(global::PID_LIST, &pid_list, true)
        .override_global(global::USE_TASK_PT_REGS, &use_task_pt_regs, true)
        .override_global(global::SYSCALL_ABI, &facts.syscall_abi, true)
        .override_global(global::WAKEUP_BYTES, &wakeup_bytes, true)
        .map_max_entries(maps::SCRATCH, u32::try_from(cpus).unwrap_or(u32::MAX))
        .map_max_entries(maps::EVENTS, config.ring_bytes)
        .load(OBJECT)
        .map_err(|e| Error::Load(one_line(&e)))?;
    phase.done("loaded the object (relocations, maps)");
    Ok(ebpf)
}

/// Attaches the program that sends each new cgroup's path. Not needed to capture: where it
/// cannot be attached, containers are named from the cgroup hierarchy as udstrace finds it
/// (one that left before that is not named), and a line says so.
fn attach_cgroup_mkdir(ebpf: &mut aya::Ebpf) {
    let attached = ebpf
        .program_mut(CGROUP_MKDIR)
        .ok_or_else(|| "not in the object".to_string())
        .and_then(|p| {
            let p: &mut aya::programs::RawTracePoint = p.try_into().map_err(|e| one_line(&e))?;
            backend::timed("loaded", CGROUP_MKDIR, || p.load()).map_err(|e| one_line(&e))?;
            backend::timed("attached", CGROUP_MKDIR, || p.attach(CGROUP_MKDIR))
                .map(|_| ())
                .map_err(|e| one_line(&e))
        });
    if let Err(e) = attached {
        eprintln!(
            "udstrace: cgroup_mkdir: {e}; a container that exits before udstrace looks may go unnamed"
        );
    }
}

#[cfg(test)]
mod tests {
    use udstrace_common::maps::{self, global};

    use super::{
        backend::BackendKind, CGROUP_MKDIR, FORK, OBJECT, REFERENCE_EMPTY, REFERENCE_FLOOR,
    };

    /// Every map, global and program userspace names is in the built object: the names are
    /// shared through `udstrace_common::maps`, and the kernel crate declares them by name.
    #[test]
    fn object_has_every_name_userspace_uses() {
        let object = aya_obj::Object::parse(OBJECT).expect("the built object parses");
        for map in maps::ALL_MAPS {
            assert!(object.maps.contains_key(map), "map {map}");
        }
        // Globals are symbols of the object's data sections: their names are in its string
        // table, each between NUL bytes.
        let has_symbol = |name: &str| {
            let mut needle = vec![0];
            needle.extend_from_slice(name.as_bytes());
            needle.push(0);
            OBJECT.windows(needle.len()).any(|w| w == needle)
        };
        for name in global::ALL {
            assert!(has_symbol(name), "global {name}");
        }
        let mut programs = vec![FORK, CGROUP_MKDIR, REFERENCE_EMPTY, REFERENCE_FLOOR];
        for kind in BackendKind::ALL {
            programs.extend(kind.backend().programs());
        }
        for name in programs {
            assert!(object.programs.contains_key(name), "program {name}");
        }
    }
}
