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
