//! What udstrace needs to know about the running kernel before it loads anything.

use std::{fs, path::Path};

use udstrace_common::{DirectMap, SyscallAbi};

use crate::{background::Background, sys, timing::Phase};

pub(crate) mod arch;
pub(crate) mod btf;
pub(crate) mod hooks;
pub(crate) mod kallsyms;
pub(crate) mod layout;

use arch::{Arch, UnknownArch};
use hooks::SendFunctions;
use kallsyms::Reading;
use layout::LayoutError;

/// Why udstrace cannot work with this kernel or these privileges.
#[derive(Debug, thiserror::Error)]
pub(crate) enum KernelError {
    #[error("permission denied: udstrace must run as root, or with CAP_BPF and CAP_PERFMON")]
    Privileges,
    #[error(
        "this kernel has no BTF ({VMLINUX_BTF} is missing): udstrace needs a kernel built with \
         CONFIG_DEBUG_INFO_BTF=y"
    )]
    NoBtf,
    #[error("cannot read the kernel's BTF: {0}")]
    Btf(String),
    #[error(transparent)]
    Layout(#[from] LayoutError),
    #[error(transparent)]
    Arch(#[from] UnknownArch),
}

/// Where the kernel publishes its BTF.
pub(crate) const VMLINUX_BTF: &str = "/sys/kernel/btf/vmlinux";
const TRACEFS: &str = "/sys/kernel/tracing";

/// Facts about the running kernel that decide which backends can work.
// Independent yes/no facts, not a state machine.
#[allow(clippy::struct_excessive_bools)]
pub(crate) struct KernelFacts {
    /// `uname -r`.
    pub(crate) release: String,
    /// The BTF aya's loads of BTF-typed programs are given: see [`Self::btf`].
    btf: LoaderBtf,
    /// Whether `sock:sock_send_length` exists (6.3+).
    pub(crate) has_sock_send_length: bool,
    /// Whether the `bpf_loop` helper exists (5.17+).
    pub(crate) has_bpf_loop: bool,
    /// Without `bpf_loop`, whether the copy may go on in tail calls (see
    /// `Arch::tail_calls_with_calls`); else the programs without them are loaded.
    pub(crate) tail_calls: bool,
    /// Whether `bpf_get_current_task_btf` and `bpf_task_pt_regs` exist (5.15+).
    pub(crate) has_task_pt_regs: bool,
    /// Whether kprobes can be created (the perf `kprobe` event source, CONFIG_KPROBES).
    pub(crate) has_kprobes: bool,
    /// Whether `unix_stream_sendpage` (before 6.5) is in the BTF: trampolines hook it then.
    pub(crate) has_sendpage: bool,
    /// Which of the functions the function-hook backends attach to are in the BTF.
    pub(crate) btf_functions: Vec<&'static str>,
    /// `/proc/kallsyms`, still being read: see [`Self::symbol_functions`],
    /// [`Self::direct_map`].
    symbols: Reading,
    /// The architecture, and `sizeof(struct page)` from the BTF: with the symbols, where the
    /// direct map and the page array are.
    arch: &'static Arch,
    page_struct: u64,
    /// The architecture's system call numbers and registers.
    pub(crate) syscall_abi: SyscallAbi,
}

impl KernelFacts {
    /// Reads the facts; `btf` is the parsed BTF the layout was taken from, dropped here;
    /// `symbols` are still being read.
    pub(crate) fn read(btf: btf::Btf, symbols: Reading) -> Result<Self, KernelError> {
        let release = fs::read_to_string("/proc/sys/kernel/osrelease")
            .map_or_else(|_| "unknown".into(), |s| s.trim().to_string());
        let has_sock_send_length = btf.has_name(&format!("btf_trace_{}", hooks::SEND_TRACEPOINT));
        let has_bpf_loop = btf.has_name("bpf_loop");
        let has_task_pt_regs = btf.has_name("bpf_task_pt_regs");
        let has_sendpage = btf.has_name("unix_stream_sendpage");
        let arch = Arch::running()?;
        let page_struct = btf
            .struct_id("page")
            .and_then(|id| btf.size_of(id))
            .unwrap_or(64);
        let syscall_abi = arch.syscall_abi(&btf)?;
        let btf_functions = SendFunctions::SENDMSG
            .into_iter()
            .chain(SendFunctions::RECVMSG)
            .filter(|f| btf.has_name(f))
            .collect();
        let loader_btf = LoaderBtf::start(btf.for_program_loads(&hooks::program_load_targets()));
        drop(btf);
        ensure_tracefs();
        Ok(Self {
            release,
            btf: loader_btf,
            has_sock_send_length,
            has_bpf_loop,
            tail_calls: arch.tail_calls_with_calls,
            has_task_pt_regs,
            has_kprobes: Path::new("/sys/bus/event_source/devices/kprobe").exists(),
            has_sendpage,
            btf_functions,
            symbols,
            arch,
            page_struct: u64::from(page_struct),
            syscall_abi,
        })
    }

    /// The BTF aya's loads of BTF-typed programs (fentry, fexit, `tp_btf`) are given: the
    /// kernel's types they attach to, at the kernel's ids. Waits for aya's parse of it.
    pub(crate) fn btf(&self) -> Result<&aya::Btf, KernelError> {
        self.btf.get()
    }

    /// Which of the functions the function-hook backends attach to are functions in
    /// `/proc/kallsyms` (empty if it cannot be read). Waits for the read.
    pub(crate) fn symbol_functions(&self) -> &[&'static str] {
        &self.symbols.get().functions
    }

    /// Whether `unix_stream_sendpage` (before 6.5) is a function here: kprobes hook it then.
    /// Waits for `/proc/kallsyms` unless the BTF has it.
    pub(crate) fn sendpage_symbol(&self) -> bool {
        self.has_sendpage || self.symbol_functions().contains(&"unix_stream_sendpage")
    }

    /// The reads the start waits for first are done: `/proc/kallsyms` goes on at full
    /// priority.
    pub(crate) fn hurry_symbols(&self) {
        self.symbols.hurry();
    }

    /// Where the direct map and the page array are. Waits for `/proc/kallsyms`.
    pub(crate) fn direct_map(&self) -> DirectMap {
        self.arch
            .direct_map(self.symbols.get(), &self.release, self.page_struct)
    }
}

/// The BTF aya's program loads are given (`btf::Btf::for_program_loads`: only their targets, at
/// the kernel's ids), parsed by aya on a thread of its own (some 120,000 placeholder records,
/// 7 ms of a CPU): the object loads meanwhile, and the first program load waits for it.
pub(crate) struct LoaderBtf(Background<Result<aya::Btf, String>>);

impl LoaderBtf {
    /// Starts aya's parse of `raw`.
    #[must_use]
    fn start(raw: Vec<u8>) -> Self {
        Self(Background::start(move || {
            let phase = Phase::start();
            let btf = aya::Btf::parse(&raw, aya::Endianness::default()).map_err(|e| e.to_string());
            phase.done("parsed the BTF for the program loads");
            btf
        }))
    }

    /// The parsed BTF; waits for the parse.
    fn get(&self) -> Result<&aya::Btf, KernelError> {
        let waiting = (!self.0.ready()).then(Phase::start);
        let parsed = self
            .0
            .get(|| Err("the thread parsing it failed".to_string()));
        if let Some(phase) = waiting {
            phase.done("waited for the BTF for the program loads");
        }
        parsed.as_ref().map_err(|e| KernelError::Btf(e.clone()))
    }
}

/// Mounts tracefs at its usual place if nothing is mounted there (minimal systems and
/// containers often lack it); kprobes are attached through it on kernels without the kprobe
/// PMU.
fn ensure_tracefs() {
    let tracefs = Path::new(TRACEFS);
    if tracefs.join("events").exists() || !tracefs.exists() {
        return;
    }
    // A refusal (a container without CAP_SYS_ADMIN, a read-only /sys) leaves things as they
    // were: nothing udstrace needs by default depends on tracefs, and a backend that does
    // says why it cannot attach.
    let _ = sys::mount_tracefs(TRACEFS);
}

/// Fails unless this process may load tracing programs: root, or CAP_BPF with CAP_PERFMON
/// (or CAP_SYS_ADMIN).
pub(crate) fn check_privileges() -> Result<(), KernelError> {
    const CAP_SYS_ADMIN: u32 = 21;
    const CAP_PERFMON: u32 = 38;
    const CAP_BPF: u32 = 39;
    let status = fs::read_to_string("/proc/self/status").unwrap_or_default();
    let effective = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        .unwrap_or(0);
    let has = |cap: u32| effective & (1 << cap) != 0;
    if has(CAP_SYS_ADMIN) || (has(CAP_BPF) && has(CAP_PERFMON)) {
        Ok(())
    } else {
        Err(KernelError::Privileges)
    }
}

/// Fails with a clear message when the kernel publishes no BTF.
pub(crate) fn check_btf() -> Result<(), KernelError> {
    if Path::new(VMLINUX_BTF).exists() {
        Ok(())
    } else {
        Err(KernelError::NoBtf)
    }
}
