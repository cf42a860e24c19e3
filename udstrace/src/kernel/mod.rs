//! What udstrace needs to know about the running kernel before it loads anything.

use std::{fs, path::Path};

use udstrace_common::DirectMap;

use crate::{sys, timing::Phase};

pub(crate) mod btf;
pub(crate) mod hooks;
pub(crate) mod layout;

use hooks::SendFunctions;
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
    /// The kernel's BTF, parsed by aya (for loading BTF-typed programs).
    pub(crate) btf: aya::Btf,
    /// Whether `sock:sock_send_length` exists (6.3+).
    pub(crate) has_sock_send_length: bool,
    /// Whether the `bpf_loop` helper exists (5.17+).
    pub(crate) has_bpf_loop: bool,
    /// Whether `bpf_get_current_task_btf` and `bpf_task_pt_regs` exist (5.15+).
    pub(crate) has_task_pt_regs: bool,
    /// Whether kprobes can be created (the perf `kprobe` event source, CONFIG_KPROBES).
    pub(crate) has_kprobes: bool,
    /// Whether `unix_stream_sendpage` exists (before 6.5).
    pub(crate) has_sendpage: bool,
    /// Which of the functions the function-hook backends attach to are in the BTF.
    pub(crate) btf_functions: Vec<&'static str>,
    /// Where the direct map and the page array are.
    pub(crate) direct_map: DirectMap,
}

impl KernelFacts {
    /// Reads the facts; `btf` is the parsed BTF the layout was taken from, dropped here;
    /// `loader_btf` ([`loader_btf`]) and `direct_map` ([`read_direct_map`]) were read
    /// meanwhile on other threads.
    pub(crate) fn read(btf: btf::Btf, loader_btf: aya::Btf, direct_map: DirectMap) -> Self {
        let release = fs::read_to_string("/proc/sys/kernel/osrelease")
            .map_or_else(|_| "unknown".into(), |s| s.trim().to_string());
        let has_sock_send_length = btf.has_name("btf_trace_sock_send_length");
        let has_bpf_loop = btf.has_name("bpf_loop");
        let has_task_pt_regs = btf.has_name("bpf_task_pt_regs");
        let has_sendpage = btf.has_name("unix_stream_sendpage");
        let btf_functions = SendFunctions::SENDMSG
            .into_iter()
            .chain(SendFunctions::RECVMSG)
            .filter(|f| btf.has_name(f))
            .collect();
        drop(btf);
        ensure_tracefs();
        Self {
            release,
            btf: loader_btf,
            has_sock_send_length,
            has_bpf_loop,
            has_task_pt_regs,
            has_kprobes: Path::new("/sys/bus/event_source/devices/kprobe").exists(),
            has_sendpage,
            btf_functions,
            direct_map,
        }
    }
}

/// The kernel's BTF as aya's program loads need it (every type built in memory), parsed once for
/// every program of a start.
pub(crate) fn loader_btf() -> Result<aya::Btf, KernelError> {
    let phase = Phase::start();
    let btf = aya::Btf::from_sys_fs().map_err(|e| KernelError::Btf(e.to_string()))?;
    phase.done("parsed the kernel's BTF for the program loads");
    Ok(btf)
}

/// [`direct_map`] of the running kernel, from `/proc/kallsyms` (which the kernel takes tens of
/// milliseconds to write out).
#[must_use]
pub(crate) fn read_direct_map() -> DirectMap {
    let phase = Phase::start();
    let map = direct_map(&fs::read_to_string("/proc/kallsyms").unwrap_or_default());
    phase.done("read /proc/kallsyms");
    map
}

/// The x86_64 direct map and `struct page` array bases: the variables that hold them when the
/// kernel randomises its memory layout (addresses from `/proc/kallsyms`), else the fixed
/// bases of 4-level paging.
#[must_use]
pub(crate) fn direct_map(kallsyms: &str) -> DirectMap {
    const PAGE_OFFSET_BASE_L4: u64 = 0xffff_8880_0000_0000;
    const VMEMMAP_BASE_L4: u64 = 0xffff_ea00_0000_0000;
    let symbol = |name: &str| {
        kallsyms.lines().find_map(|line| {
            let mut words = line.split_whitespace();
            let (addr, _, sym) = (words.next()?, words.next()?, words.next()?);
            (sym == name)
                .then(|| u64::from_str_radix(addr, 16).ok())
                .flatten()
                .filter(|&a| a != 0)
        })
    };
    DirectMap {
        page_offset_base_addr: symbol("page_offset_base").unwrap_or(0),
        page_offset_base: PAGE_OFFSET_BASE_L4,
        vmemmap_base_addr: symbol("vmemmap_base").unwrap_or(0),
        vmemmap_base: VMEMMAP_BASE_L4,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn direct_map_from_kallsyms() {
        let randomised = "ffffffff82a1b2c8 D page_offset_base\nffffffff82a1b2c0 D vmemmap_base\n\
                          ffffffff820cc4a0 t unix_stream_sendmsg\n";
        let m = direct_map(randomised);
        assert_eq!(m.page_offset_base_addr, 0xffff_ffff_82a1_b2c8);
        assert_eq!(m.vmemmap_base_addr, 0xffff_ffff_82a1_b2c0);
        // Hidden addresses (kptr_restrict) and kernels without the variables: fixed bases.
        let hidden = "0000000000000000 D page_offset_base\n";
        let m = direct_map(hidden);
        assert_eq!(m.page_offset_base_addr, 0);
        assert_eq!(m.vmemmap_base_addr, 0);
        assert_eq!(m.page_offset_base, 0xffff_8880_0000_0000);
    }
}
