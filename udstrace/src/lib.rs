//! udstrace: tcpdump for Unix domain sockets.
//!
//! The kernel side (`udstrace-ebpf`) records every message a Unix socket accepts; this crate
//! loads it ([`tracer`], [`backend`], [`layout`]), decodes its records ([`record`]), turns them
//! into packets with synthesised headers ([`packet`], [`meta`]) and writes them as pcapng
//! ([`pcapng`]) or text ([`text`]).

pub mod backend;
pub mod btf;
pub mod capture;
pub mod checksum;
pub mod cli;
pub mod clock;
pub mod decode;
pub mod error;
pub mod extcap;
pub mod fds;
pub mod filter;
#[cfg(test)]
mod golden;
pub mod kernel;
pub mod layout;
pub mod ls;
pub mod meta;
pub mod names;
pub mod packet;
pub mod pcapng;
pub mod peers;
pub mod reader;
pub mod record;
pub mod sink;
pub mod sockets;
pub mod text;
pub mod tracer;
