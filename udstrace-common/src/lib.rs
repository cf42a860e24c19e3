//! Wire types shared by udstrace's kernel programs and its userspace.
//!
//! Everything here crosses the kernel/user boundary as raw bytes, so every struct is
//! `#[repr(C)]`, built from fixed-width integers and byte arrays only, with explicit padding
//! fields: the layout is the same on both sides and never depends on the compiler. Userspace
//! never reinterprets these bytes in place; it decodes them field by field (see
//! `udstrace::record`).
#![no_std]

pub mod counter;
pub mod filter;
pub mod layout;
pub mod maps;
pub mod record;

pub use layout::{DirectMap, KernelLayout, SyscallAbi};
pub use record::{AncillaryRecord, CgroupRecord, FdInfo, SendRecord, SockType};
