#![no_std]
//! Kernel programs live in the binary target (`src/main.rs`); this library target exists so that
//! `udstrace` can name this crate as a build dependency.
