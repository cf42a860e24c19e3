//! The library target: lets `udstrace` name this crate as a build dependency.
//!
//! The kernel programs are the binary target (`src/main.rs`).
#![no_std]
