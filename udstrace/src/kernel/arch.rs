//! The per-architecture table: what udstrace needs to know about x86_64 and arm64 that the
//! kernel's BTF does not say. System call numbers, which `struct pt_regs` members hold the
//! call's number and arguments, how a 32-bit (compat) task is told apart, and where the direct
//! map and the `struct page` array are. Offsets of those members come from the BTF; the
//! programs get the result through their read-only globals (`SyscallAbi`, `DirectMap`).
//!
//! The architecture is the one udstrace was built for (`std::env::consts::ARCH`): the kernel
//! it runs on is the same one (a 64-bit kernel; 32-bit userlands are not supported).

use udstrace_common::{DirectMap, SyscallAbi};

use super::{btf::Btf, kallsyms::Symbols, layout::LayoutError};

/// One architecture's entry.
pub(crate) struct Arch {
    /// `std::env::consts::ARCH`.
    pub(crate) name: &'static str,
    /// Column of [`SYSCALLS`].
    column: usize,
    /// `struct pt_regs` member holding the system call number.
    pub(crate) regs_nr: &'static str,
    /// Members holding the six arguments, with an index into the member when it is an array
    /// (arm64's `regs[]`; its first argument is `orig_x0`, which the return value does not
    /// overwrite).
    pub(crate) regs_args: [(&'static str, u32); 6],
    /// The member that tells a 32-bit task, and the mask and value it has then.
    compat: (&'static str, u64, u64),
    /// The direct map of a kernel of this architecture, from `/proc/kallsyms`, its release and
    /// `sizeof(struct page)`.
    direct_map: fn(&Symbols, &str, u64) -> DirectMap,
    /// Whether its JIT takes a program with both a tail call and calls to functions of its own
    /// on kernels without `bpf_loop` (before 5.17): x86_64's from 5.10; arm64's only from 6.0.
    pub(crate) tail_calls_with_calls: bool,
}

/// The system calls udstrace names, with their numbers on each architecture (x86_64:
/// arch/x86/entry/syscalls/syscall_64.tbl; arm64: include/uapi/asm-generic/unistd.h). The
/// x86_64 column is also udstrace's own numbering (`packet::Syscall`).
const SYSCALLS: [(&str, [i32; 2]); 17] = [
    ("read", [0, 63]),
    ("write", [1, 64]),
    ("readv", [19, 65]),
    ("writev", [20, 66]),
    ("sendfile", [40, 71]),
    ("sendto", [44, 206]),
    ("recvfrom", [45, 207]),
    ("sendmsg", [46, 211]),
    ("recvmsg", [47, 212]),
    ("splice", [275, 76]),
    ("preadv", [295, 69]),
    ("pwritev", [296, 70]),
    ("recvmmsg", [299, 243]),
    ("sendmmsg", [307, 269]),
    ("preadv2", [327, 286]),
    ("pwritev2", [328, 287]),
    ("io_uring_enter", [426, 426]),
];

/// The architectures udstrace runs on.
pub(crate) const ARCHES: [Arch; 2] = [
    Arch {
        name: "x86_64",
        column: 0,
        regs_nr: "orig_ax",
        regs_args: [
            ("di", 0),
            ("si", 0),
            ("dx", 0),
            ("r10", 0),
            ("r8", 0),
            ("r9", 0),
        ],
        // `cs` is `__USER32_CS` (0x23) in a task running the 32-bit ABI.
        compat: ("cs", 0xffff, 0x23),
        direct_map: direct_map_x86_64,
        tail_calls_with_calls: true,
    },
    Arch {
        name: "aarch64",
        column: 1,
        regs_nr: "syscallno",
        regs_args: [
            ("orig_x0", 0),
            ("regs", 1),
            ("regs", 2),
            ("regs", 3),
            ("regs", 4),
            ("regs", 5),
        ],
        // `PSR_MODE32_BIT` in `pstate`: an AArch32 task.
        compat: ("pstate", 0x10, 0x10),
        direct_map: direct_map_aarch64,
        tail_calls_with_calls: false,
    },
];

/// Why udstrace cannot run on this architecture.
#[derive(Debug, thiserror::Error)]
#[error("udstrace does not support the {0} architecture (only x86_64 and aarch64)")]
pub(crate) struct UnknownArch(pub(crate) &'static str);

impl Arch {
    /// The entry of the architecture udstrace was built for.
    pub(crate) fn running() -> Result<&'static Self, UnknownArch> {
        Self::named(std::env::consts::ARCH)
    }

    /// The entry named `name` (`std::env::consts::ARCH`'s spelling).
    pub(crate) fn named(name: &'static str) -> Result<&'static Self, UnknownArch> {
        ARCHES
            .iter()
            .find(|a| a.name == name)
            .ok_or(UnknownArch(name))
    }

    /// This architecture's number of the system call `name` (-1: none of the table's).
    #[must_use]
    pub(crate) fn number(&self, name: &str) -> i64 {
        SYSCALLS
            .iter()
            .find(|(n, _)| *n == name)
            .map_or(-1, |(_, nrs)| i64::from(nrs[self.column]))
    }

    /// udstrace's own number (x86_64's) of this architecture's system call `nr`; numbers not
    /// in the table are kept (they name no call), negative ones (none, compat) too.
    #[must_use]
    pub(crate) fn canonical(&self, nr: i32) -> i32 {
        if nr < 0 {
            return nr;
        }
        SYSCALLS
            .iter()
            .find(|(_, nrs)| nrs[self.column] == nr)
            .map_or(-1, |(_, nrs)| nrs[0])
    }

    /// Offsets in `struct pt_regs` of the system call number and the six arguments.
    pub(crate) fn regs_offsets(&self, btf: &Btf) -> Result<(u32, [u32; 6]), LayoutError> {
        let off = |member: &str| super::layout::offset_of(btf, "pt_regs", member);
        let mut args = [0; 6];
        for (arg, (member, index)) in args.iter_mut().zip(self.regs_args) {
            *arg = off(member)? + index * 8;
        }
        Ok((off(self.regs_nr)?, args))
    }

    /// The system call ABI the programs are given, member offsets and sizes from `btf`.
    pub(crate) fn syscall_abi(&self, btf: &Btf) -> Result<SyscallAbi, LayoutError> {
        let (member, mask, value) = self.compat;
        Ok(SyscallAbi {
            read: self.number("read"),
            write: self.number("write"),
            readv: self.number("readv"),
            writev: self.number("writev"),
            sendto: self.number("sendto"),
            recvfrom: self.number("recvfrom"),
            sendmsg: self.number("sendmsg"),
            recvmsg: self.number("recvmsg"),
            preadv: self.number("preadv"),
            pwritev: self.number("pwritev"),
            sendmmsg: self.number("sendmmsg"),
            preadv2: self.number("preadv2"),
            pwritev2: self.number("pwritev2"),
            nr_size: u64::from(super::layout::member_size(btf, "pt_regs", self.regs_nr)?),
            compat_reg: u64::from(super::layout::offset_of(btf, "pt_regs", member)?),
            compat_mask: mask,
            compat_value: value,
        })
    }

    /// Where the direct map and the page array are, from `/proc/kallsyms`, the release and
    /// `sizeof(struct page)` (from the BTF).
    #[must_use]
    pub(crate) fn direct_map(
        &self,
        symbols: &Symbols,
        release: &str,
        page_struct: u64,
    ) -> DirectMap {
        (self.direct_map)(symbols, release, page_struct)
    }
}

/// x86_64: the variables that hold the bases when the kernel randomises its memory layout
/// (addresses from `/proc/kallsyms`), else the fixed bases of 4-level paging.
fn direct_map_x86_64(symbols: &Symbols, _release: &str, _page_struct: u64) -> DirectMap {
    DirectMap {
        page_offset_base_addr: symbols.address("page_offset_base").unwrap_or(0),
        page_offset_base: 0xffff_8880_0000_0000,
        vmemmap_base_addr: symbols.address("vmemmap_base").unwrap_or(0),
        vmemmap_base: 0xffff_ea00_0000_0000,
        page_size: 4096,
    }
}

/// arm64 with 4 KiB pages: `page_to_virt()` is `PAGE_OFFSET + (page - VMEMMAP_START) /
/// sizeof(struct page) * PAGE_SIZE`, both bases fixed at build time (randomisation moves the
/// physical side, `memstart_addr`). Both depend on `VA_BITS`, 48 or 52 (Debian's 6.12 is built
/// with 52, its 5.10 and 6.1 with 48), which nothing a process can read says for sure (the
/// variable `vabits_actual` is gone from 6.9's kallsyms). It need not be known: from 5.11 the
/// `vmemmap` region moves with `PAGE_OFFSET` so that a page's address comes out the same for
/// both (`-(1 << (VA_BITS - 6))` to 6.8, with 64-byte pages; `-1 GiB - VMEMMAP_SIZE` from
/// 6.9, `VMEMMAP_SIZE` being `(_PAGE_END(48) - PAGE_OFFSET) / PAGE_SIZE * sizeof(struct
/// page)`: the region ends where the 48-bit one ends), and the 52-bit `VMEMMAP_START` is the
/// lower, so that the programs' check `page >= VMEMMAP_START` admits the pages of both. So
/// the 52-bit bases are given from 5.11; before, the region was `-2^41 - 2 MiB`, with 48 bits
/// (arch/arm64/include/asm/memory.h of each release).
fn direct_map_aarch64(_symbols: &Symbols, release: &str, page_struct: u64) -> DirectMap {
    let version = release_version(release);
    let va_bits = if version >= (5, 11) { 52 } else { 48 };
    DirectMap {
        page_offset_base_addr: 0,
        page_offset_base: 0u64.wrapping_sub(1 << va_bits),
        vmemmap_base_addr: 0,
        vmemmap_base: aarch64_vmemmap_start(version, va_bits, page_struct),
        page_size: 4096,
    }
}

/// `VMEMMAP_START` of an arm64 kernel of `version` built with `va_bits`, its `struct page`
/// `page_struct` bytes (see [`direct_map_aarch64`]).
fn aarch64_vmemmap_start(version: (u32, u32), va_bits: u32, page_struct: u64) -> u64 {
    if version < (5, 11) {
        0xffff_fdff_ffe0_0000
    } else if version < (6, 9) {
        0u64.wrapping_sub(1 << (va_bits - 6))
    } else {
        let linear_pages = ((1u64 << va_bits) - (1 << 47)) >> 12;
        0u64.wrapping_sub(1 << 30)
            .wrapping_sub(linear_pages * page_struct.max(1))
    }
}

/// (major, minor) of a kernel release (`6.12.48+deb13-arm64`); (0, 0) if unreadable.
fn release_version(release: &str) -> (u32, u32) {
    let mut parts = release.split(|c: char| !c.is_ascii_digit());
    let mut next = || parts.next().and_then(|p| p.parse().ok()).unwrap_or(0);
    (next(), next())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_round_trip_through_the_canonical_ones() {
        let arm = Arch::named("aarch64").unwrap();
        let x86 = Arch::named("x86_64").unwrap();
        for (name, _) in SYSCALLS {
            let nr = i32::try_from(arm.number(name)).unwrap();
            assert_eq!(i64::from(arm.canonical(nr)), x86.number(name), "{name}");
            let own = i32::try_from(x86.number(name)).unwrap();
            assert_eq!(x86.canonical(own), own, "{name}");
        }
        // Numbers not in the table name no call; negative ones stay.
        assert_eq!(arm.canonical(0), -1);
        assert_eq!(x86.canonical(1), 1);
        assert_eq!(arm.canonical(-2), -2);
        assert!(Arch::named("riscv64").is_err());
    }

    #[test]
    fn direct_map_from_kallsyms() {
        let x86 = Arch::named("x86_64").unwrap();
        let randomised = "ffffffff82a1b2c8 D page_offset_base\nffffffff82a1b2c0 D vmemmap_base\n\
                          ffffffff820cc4a0 t unix_stream_sendmsg\n";
        let m = x86.direct_map(&Symbols::search(randomised.as_bytes()), "6.1.0", 64);
        assert_eq!(m.page_offset_base_addr, 0xffff_ffff_82a1_b2c8);
        assert_eq!(m.vmemmap_base_addr, 0xffff_ffff_82a1_b2c0);
        // Hidden addresses (kptr_restrict) and kernels without the variables: fixed bases.
        let hidden = Symbols::search(&b"0000000000000000 D page_offset_base\n"[..]);
        let m = x86.direct_map(&hidden, "6.1.0", 64);
        assert_eq!(m.page_offset_base_addr, 0);
        assert_eq!(m.vmemmap_base_addr, 0);
        assert_eq!(m.page_offset_base, 0xffff_8880_0000_0000);
    }

    #[test]
    fn arm64_vmemmap_moves_with_the_release() {
        let arm = Arch::named("aarch64").unwrap();
        let at = |release| {
            let m = arm.direct_map(&Symbols::default(), release, 64);
            (m.page_offset_base, m.vmemmap_base)
        };
        assert_eq!(
            at("5.10.0-32-arm64"),
            (0xffff_0000_0000_0000, 0xffff_fdff_ffe0_0000)
        );
        assert_eq!(
            at("6.1.0-50-arm64"),
            (0xfff0_0000_0000_0000, 0xffff_c000_0000_0000)
        );
        assert_eq!(
            at("6.12.95+deb12-arm64"),
            (0xfff0_0000_0000_0000, 0xffff_c1ff_c000_0000)
        );
        assert_eq!(release_version("6.12.48+deb13-arm64"), (6, 12));
    }

    /// The bases given (52-bit) turn the pages of a kernel built with 48 bits and of one built
    /// with 52 into the addresses those kernels' own `page_to_virt()` gives (their memory.h's
    /// formula and constants), on both sides of 6.9's move of the region: the first page of
    /// each region, one further in, and the last.
    #[test]
    fn arm64_bases_fit_kernels_built_with_48_and_52_bits() {
        let arm = Arch::named("aarch64").unwrap();
        for release in ["6.1.0-50-arm64", "6.12.95+deb12-arm64"] {
            let version = release_version(release);
            let m = arm.direct_map(&Symbols::default(), release, 64);
            let ours = |page: u64| {
                (page >= m.vmemmap_base)
                    .then(|| m.page_offset_base + (page - m.vmemmap_base) / 64 * m.page_size)
            };
            for va_bits in [48, 52] {
                let start = aarch64_vmemmap_start(version, va_bits, 64);
                let theirs =
                    |page: u64| 0u64.wrapping_sub(1 << va_bits) + (page - start) / 64 * 4096;
                for page in [start, start + 0x1234_5640, 0xffff_ffff_bfff_ffc0] {
                    assert_eq!(
                        ours(page),
                        Some(theirs(page)),
                        "{release} {va_bits} {page:#x}"
                    );
                }
            }
        }
    }
}
