//! The Internet checksum (RFC 1071) of the synthesised TCP and UDP headers and payloads.
//!
//! It is the one pass userspace makes over every captured byte besides copying it, so it is
//! written to be fast: the one's complement sum is independent of byte order (RFC 1071, 2.B),
//! so the bytes are summed as little-endian 32-bit words into 64-bit accumulators (which the
//! compiler turns into vector additions) and the folded result is byte-swapped once.

/// Adds `data` (as big-endian 16-bit words, an odd tail padded with zero) to the one's
/// complement sum `sum`, kept unfolded in 64 bits. Callers pass even-length pieces except for
/// the last one.
#[must_use]
pub(crate) fn add(sum: u64, data: &[u8]) -> u64 {
    let (words, tail) = data.split_at(data.len() & !1);
    let mut sum = sum + u64::from(fold(sum_le(words)).swap_bytes());
    if let [last] = tail {
        sum += u64::from(*last) << 8;
    }
    sum
}

/// The checksum field for a sum: the one's complement of the sum folded to 16 bits.
#[must_use]
pub(crate) fn finish(sum: u64) -> u16 {
    !fold(sum)
}

/// Folds a one's complement sum kept in 64 bits to 16 bits (end-around carries).
fn fold(mut sum: u64) -> u16 {
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum as u16
}

/// One's complement sum, unfolded, of an even number of bytes taken as little-endian 16-bit
/// words. A little-endian 32-bit word is `lo + hi * 2^16`, and `2^16 = 1` modulo `0xffff`,
/// so adding 32-bit words adds their two halves; eight accumulators of 64 bits cannot
/// overflow below 2^35 bytes.
fn sum_le(words: &[u8]) -> u64 {
    const LANES: usize = 8;
    let mut acc = [0u64; LANES];
    let mut chunks = words.chunks_exact(4 * LANES);
    for chunk in &mut chunks {
        for (lane, word) in acc.iter_mut().zip(chunk.chunks_exact(4)) {
            *lane += u64::from(u32::from_le_bytes([word[0], word[1], word[2], word[3]]));
        }
    }
    let mut total = acc
        .iter()
        .fold(0u64, |a, &b| a + (b & 0xffff_ffff) + (b >> 32));
    for pair in chunks.remainder().chunks_exact(2) {
        total += u64::from(u16::from_le_bytes([pair[0], pair[1]]));
    }
    total
}

#[cfg(test)]
mod tests {
    use super::{add, finish};

    /// RFC 1071's definition, word by word.
    fn reference(data: &[u8]) -> u16 {
        let mut sum: u64 = 0;
        for pair in data.chunks(2) {
            let hi = u64::from(pair[0]) << 8;
            sum += hi | pair.get(1).map_or(0, |&b| u64::from(b));
        }
        while sum >> 16 != 0 {
            sum = (sum & 0xffff) + (sum >> 16);
        }
        !(sum as u16)
    }

    #[test]
    fn matches_the_definition_for_every_length_and_alignment() {
        let data: Vec<u8> = (0..5000u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        for len in (0..300).chain([1023, 1024, 4095, 4096, 4097]) {
            for start in 0..3 {
                let piece = &data[start..start + len];
                assert_eq!(finish(add(0, piece)), reference(piece), "{len} at {start}");
            }
        }
    }

    #[test]
    fn pieces_add_up_like_the_whole() {
        let data: Vec<u8> = (0..=255u8).cycle().take(3001).collect();
        let (a, rest) = data.split_at(40);
        let (b, c) = rest.split_at(1000);
        assert_eq!(finish(add(add(add(0, a), b), c)), reference(&data));
    }

    #[test]
    fn all_ones_and_all_zeros() {
        assert_eq!(finish(add(0, &[0; 64])), 0xffff);
        assert_eq!(finish(add(0, &[0xff; 64])), 0);
        assert_eq!(finish(add(0, &vec![0xff; 65_024])), 0);
        // The example of RFC 1071, 3.
        let bytes = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        assert_eq!(finish(add(0, &bytes)), !0xddf2);
    }
}
