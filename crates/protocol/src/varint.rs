//! The VarInt length prefix of the MessagePack hub protocol: 7 bits a byte, least-significant group
//! first, high bit set when more bytes follow; at most five bytes, the fifth holding only 0..=7, so a
//! message is at most 2 GiB - 1.

use crate::error::ProtocolError;

/// The largest prefix, in bytes.
pub const MAX_LEN: usize = 5;

/// Result of reading a prefix from the front of a buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Prefix {
    /// The prefix is complete: the body length and the number of prefix bytes.
    Complete {
        /// Length of the message body that follows.
        length: usize,
        /// Bytes taken by the prefix itself.
        prefix_len: usize,
    },
    /// More bytes are needed to finish the prefix.
    Incomplete,
}

/// Reads a length prefix from the start of `buf`.
pub fn decode(buf: &[u8]) -> Result<Prefix, ProtocolError> {
    let mut length: u64 = 0;
    for (i, &byte) in buf.iter().take(MAX_LEN).enumerate() {
        if i == MAX_LEN - 1 && byte > 0x07 {
            return Err(ProtocolError::LengthPrefixTooLarge);
        }
        length |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            let length =
                usize::try_from(length).map_err(|_| ProtocolError::LengthPrefixTooLarge)?;
            return Ok(Prefix::Complete {
                length,
                prefix_len: i + 1,
            });
        }
    }
    Ok(Prefix::Incomplete)
}

/// Writes the prefix for `length` into a five-byte array; returns the array and how many bytes are used.
/// Lengths of 2 GiB or more are a caller bug and are clamped to the five-byte maximum form.
pub fn encode(length: usize) -> ([u8; MAX_LEN], usize) {
    let mut value = u32::try_from(length).unwrap_or(u32::MAX) & 0x7fff_ffff;
    let mut out = [0u8; MAX_LEN];
    let mut used = 0;
    for slot in out.iter_mut() {
        let mut byte = (value & 0x7f) as u8;
        value >>= 7;
        if value != 0 {
            byte |= 0x80;
        }
        *slot = byte;
        used += 1;
        if value == 0 {
            break;
        }
    }
    (out, used)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enc(n: usize) -> Vec<u8> {
        let (bytes, used) = encode(n);
        bytes[..used].to_vec()
    }

    #[test]
    fn known_vectors() {
        assert_eq!(enc(0), [0x00]);
        assert_eq!(enc(53), [0x35]);
        assert_eq!(enc(127), [0x7f]);
        assert_eq!(enc(128), [0x80, 0x01]);
        assert_eq!(enc(5248), [0x80, 0x29]);
        assert_eq!(enc(0x7fff_ffff), [0xff, 0xff, 0xff, 0xff, 0x07]);
    }

    #[test]
    fn decode_round_trips() {
        for n in [
            0usize,
            1,
            53,
            127,
            128,
            5248,
            16_383,
            16_384,
            1 << 21,
            0x7fff_ffff,
        ] {
            let bytes = enc(n);
            assert_eq!(
                decode(&bytes),
                Ok(Prefix::Complete {
                    length: n,
                    prefix_len: bytes.len()
                })
            );
            // Any strict prefix is incomplete.
            for cut in 0..bytes.len() {
                assert_eq!(decode(&bytes[..cut]), Ok(Prefix::Incomplete));
            }
        }
    }

    #[test]
    fn rejects_oversized_prefixes() {
        assert_eq!(
            decode(&[0xff, 0xff, 0xff, 0xff, 0x08]),
            Err(ProtocolError::LengthPrefixTooLarge)
        );
        assert_eq!(
            decode(&[0x80, 0x80, 0x80, 0x80, 0x80, 0x01]),
            Err(ProtocolError::LengthPrefixTooLarge)
        );
    }
}
