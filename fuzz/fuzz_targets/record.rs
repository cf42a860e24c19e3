//! The kernel-record decoder: any bytes from the ring buffer.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| udstrace::fuzz::record(data));
