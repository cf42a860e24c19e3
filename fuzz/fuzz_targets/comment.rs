//! The packet comment parser of `-r`: any text, and what parses must write back the same.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        udstrace::fuzz::comment(text);
    }
});
