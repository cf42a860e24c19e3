//! udstrace: tcpdump for Unix domain sockets.
//!
//! The modules, in the order data flows (docs/DESIGN.md has the map):
//! [`cli`] parses the command line and runs a command; [`kernel`] reads what the running
//! kernel is and where its fields are; [`tracer`] loads and attaches the kernel programs
//! (`udstrace-ebpf`) and decodes their records; [`capture`] drains the ring buffer and turns
//! records into packets; [`proc`] names the processes and sockets at both ends from `/proc` and
//! sock_diag; [`output`] writes packets as pcapng or text and reads captures back.
//! [`packet`] is the vocabulary they share: the packet and the table of its fields.
//!
//! Dependencies point one way: `cli` -> `capture` -> `output` -> `proc` -> `tracer` ->
//! `kernel`, everything may use `packet`, `error`, `sys` and `timing`, and `packet` uses nothing.

mod background;
mod capture;
pub mod cli;
mod error;
#[doc(hidden)]
pub mod fuzz;
mod hash;
mod kernel;
mod output;
mod packet;
mod proc;
mod sys;
mod timing;
mod tracer;
#[cfg(test)]
mod tree;
