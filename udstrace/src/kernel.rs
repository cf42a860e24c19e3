//! What udstrace needs to know about the running kernel before it loads anything.

use std::{fs, path::Path};

use crate::error::Error;

/// Where the kernel publishes its BTF.
pub const VMLINUX_BTF: &str = "/sys/kernel/btf/vmlinux";
const TRACEFS: &str = "/sys/kernel/tracing";

/// Facts about the running kernel that decide which backends can work.
pub struct KernelFacts {
    /// `uname -r`.
    pub release: String,
    /// The kernel's BTF, parsed by aya (for loading BTF-typed programs).
    pub btf: aya::Btf,
    /// Whether `sock:sock_send_length` exists (6.3+).
    pub has_sock_send_length: bool,
    /// Whether the `syscalls:*` tracepoints exist (CONFIG_FTRACE_SYSCALLS).
    pub has_syscall_tracepoints: bool,
    /// Whether the `bpf_loop` helper exists (5.17+).
    pub has_bpf_loop: bool,
}

impl KernelFacts {
    /// Reads the facts; `btf` is the parsed BTF the layout was taken from, dropped here.
    pub fn read(btf: crate::btf::Btf) -> Result<Self, Error> {
        let release = fs::read_to_string("/proc/sys/kernel/osrelease")
            .map_or_else(|_| "unknown".into(), |s| s.trim().to_string());
        let has_sock_send_length = btf.has_name("btf_trace_sock_send_length");
        let has_bpf_loop = btf.has_name("bpf_loop");
        drop(btf);
        let aya_btf = aya::Btf::from_sys_fs().map_err(|e| Error::Btf(e.to_string()))?;
        ensure_tracefs();
        let has_syscall_tracepoints = Path::new(TRACEFS)
            .join("events/syscalls/sys_enter_sendmmsg")
            .exists()
            || Path::new("/sys/kernel/debug/tracing/events/syscalls/sys_enter_sendmmsg").exists();
        Ok(Self {
            release,
            btf: aya_btf,
            has_sock_send_length,
            has_syscall_tracepoints,
            has_bpf_loop,
        })
    }
}

/// Mounts tracefs at its usual place if nothing is mounted there (minimal systems and
/// containers often lack it); regular tracepoints are attached through it.
fn ensure_tracefs() {
    let tracefs = Path::new(TRACEFS);
    if tracefs.join("events").exists() || !tracefs.exists() {
        return;
    }
    // SAFETY: plain mount(2) with NUL-terminated constant strings.
    unsafe {
        libc::mount(
            c"nodev".as_ptr(),
            c"/sys/kernel/tracing".as_ptr(),
            c"tracefs".as_ptr(),
            0,
            std::ptr::null(),
        );
    }
}

/// Fails unless this process may load tracing programs: root, or CAP_BPF with CAP_PERFMON
/// (or CAP_SYS_ADMIN).
pub fn check_privileges() -> Result<(), Error> {
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
        Err(Error::Privileges)
    }
}

/// Fails with a clear message when the kernel publishes no BTF.
pub fn check_btf() -> Result<(), Error> {
    if Path::new(VMLINUX_BTF).exists() {
        Ok(())
    } else {
        Err(Error::NoBtf)
    }
}
