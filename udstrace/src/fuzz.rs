//! Entry points for the fuzz targets (`fuzz/` at the workspace root): the three places that
//! read bytes udstrace did not write itself. Not a public interface.

use crate::{
    output::{reader, text::PayloadStyle},
    packet::Meta,
    tracer::record::{control_messages, Record},
};

/// Decodes `bytes` as one ring buffer record, and the control data of an ancillary record.
/// Never panics, whatever the bytes.
pub fn record(bytes: &[u8]) {
    if let Ok(Record::Ancillary(a)) = Record::try_from(bytes) {
        let _ = control_messages(&a.control);
    }
}

/// Parses `comment` as a packet comment (as `-r` does). What parses is written back and must
/// parse again to the same fields.
pub fn comment(comment: &str) {
    let Ok(meta) = comment.parse::<Meta>() else {
        return;
    };
    let mut written = String::new();
    meta.write_comment(&mut written);
    let again: Meta = written
        .parse()
        .unwrap_or_else(|e| panic!("`{written}` (from `{comment}`) does not parse: {e}"));
    assert_eq!(again, meta, "`{comment}` written as `{written}`");
}

/// Reads `bytes` as a capture file, as `-r` would, with the payloads in hex: the packets
/// read, or `-r`'s error line. Never panics, whatever the bytes.
pub fn read(bytes: &[u8]) -> Result<u64, String> {
    reader::read_bytes(bytes, PayloadStyle::HexAscii).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    fn corpus(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../fuzz/corpus")
            .join(target);
        let mut files: Vec<_> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .map(|e| e.unwrap().path())
            .map(|p| {
                let bytes = std::fs::read(&p).unwrap();
                (p, bytes)
            })
            .collect();
        files.sort();
        assert!(!files.is_empty(), "{} is empty", dir.display());
        files
    }

    /// Every input the fuzz targets keep goes through them here too, with the unit tests: a
    /// past finding stays fixed without a fuzzer.
    #[test]
    fn the_corpus_passes_every_target() {
        for (_, bytes) in corpus("record") {
            super::record(&bytes);
        }
        for (path, bytes) in corpus("comment") {
            if let Ok(text) = std::str::from_utf8(&bytes) {
                super::comment(text);
            }
            if path
                .file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("seed-"))
            {
                // The comments of real captures parse.
                let text = String::from_utf8(bytes).unwrap();
                assert!(text.parse::<crate::packet::Meta>().is_ok(), "{text}");
            }
        }
        for (path, bytes) in corpus("read") {
            let read = super::read(&bytes);
            if path
                .file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("seed-"))
            {
                assert!(
                    read.as_ref().is_ok_and(|n| *n > 0),
                    "{}: {read:?}",
                    path.display()
                );
            }
        }
    }
}
