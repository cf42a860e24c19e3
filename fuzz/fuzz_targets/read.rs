//! `-r`: any bytes as a capture file.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = udstrace::fuzz::read(data);
});
