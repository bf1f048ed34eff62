//! RFC 6455 frames as a server sees them, without I/O: reading the head of a client frame (with every
//! check a server owes: reserved bits, known opcodes, masking, control-frame rules, a maximum payload),
//! unmasking, checking a close frame's payload, and writing the head of a server frame.
//!
//! The gateway reads the bytes of a socket into a small buffer of its own and calls [`parse_head`]
//! on it: nothing is allocated for a connection until a frame's payload arrives, and then exactly
//! its size.

/// A frame's opcode (RFC 6455 §5.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Opcode {
    /// 0x0: a further fragment of a message.
    Continuation,
    /// 0x1: UTF-8 text.
    Text,
    /// 0x2: bytes.
    Binary,
    /// 0x8.
    Close,
    /// 0x9.
    Ping,
    /// 0xA.
    Pong,
}

impl Opcode {
    fn from_bits(bits: u8) -> Option<Self> {
        Some(match bits {
            0x0 => Self::Continuation,
            0x1 => Self::Text,
            0x2 => Self::Binary,
            0x8 => Self::Close,
            0x9 => Self::Ping,
            0xA => Self::Pong,
            _ => return None,
        })
    }

    fn bits(self) -> u8 {
        match self {
            Self::Continuation => 0x0,
            Self::Text => 0x1,
            Self::Binary => 0x2,
            Self::Close => 0x8,
            Self::Ping => 0x9,
            Self::Pong => 0xA,
        }
    }

    /// Close, Ping and Pong.
    pub fn is_control(self) -> bool {
        matches!(self, Self::Close | Self::Ping | Self::Pong)
    }
}

/// The head of a client frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Head {
    /// The last fragment of its message.
    pub fin: bool,
    /// What the frame carries.
    pub opcode: Opcode,
    /// The masking key.
    pub mask: [u8; 4],
    /// Payload bytes that follow the head.
    pub len: usize,
    /// Bytes the head took (2 to 14).
    pub head_len: usize,
}

/// A client frame a server must refuse, with the close code RFC 6455 §7.4.1 names for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// RSV1–3 set with no extension negotiated.
    #[error("reserved bits set")]
    ReservedBits,
    /// An opcode RFC 6455 does not define.
    #[error("unknown opcode")]
    UnknownOpcode,
    /// A client frame without a mask (§5.1).
    #[error("unmasked client frame")]
    Unmasked,
    /// A control frame with FIN clear.
    #[error("fragmented control frame")]
    ControlFragmented,
    /// A control frame with more than 125 bytes.
    #[error("control frame too large")]
    ControlTooLarge,
    /// A payload above the maximum.
    #[error("frame too large")]
    TooLarge,
    /// A close payload of one byte, or with a code no endpoint may send.
    #[error("invalid close frame")]
    InvalidClose,
    /// A close reason that is not UTF-8.
    #[error("invalid UTF-8 in a close reason")]
    InvalidCloseReason,
}

impl FrameError {
    /// The close code to answer with: 1009 for a frame too large, 1007 for bad UTF-8, else 1002.
    pub fn close_code(self) -> u16 {
        match self {
            Self::TooLarge => 1009,
            Self::InvalidCloseReason => 1007,
            _ => 1002,
        }
    }
}

/// The longest head of a frame: 2 bytes, an 8-byte length, a 4-byte mask.
pub const MAX_HEAD: usize = 14;

/// Reads the head of the client frame `bytes` starts with: `Ok(None)` while more bytes are needed, an
/// error for a frame the server must refuse (checked as soon as the bytes that show it are there).
pub fn parse_head(bytes: &[u8], max_payload: usize) -> Result<Option<Head>, FrameError> {
    let (Some(&first), Some(&second)) = (bytes.first(), bytes.get(1)) else {
        return Ok(None);
    };
    if first & 0x70 != 0 {
        return Err(FrameError::ReservedBits);
    }
    let fin = first & 0x80 != 0;
    let opcode = Opcode::from_bits(first & 0x0F).ok_or(FrameError::UnknownOpcode)?;
    if second & 0x80 == 0 {
        return Err(FrameError::Unmasked);
    }
    let short = second & 0x7F;
    if opcode.is_control() {
        if !fin {
            return Err(FrameError::ControlFragmented);
        }
        if short > 125 {
            return Err(FrameError::ControlTooLarge);
        }
    }
    let (len, at) = match short {
        126 => match bytes.get(2..4).and_then(|b| <[u8; 2]>::try_from(b).ok()) {
            Some(b) => (u64::from(u16::from_be_bytes(b)), 4),
            None => return Ok(None),
        },
        127 => match bytes.get(2..10).and_then(|b| <[u8; 8]>::try_from(b).ok()) {
            Some(b) => (u64::from_be_bytes(b), 10),
            None => return Ok(None),
        },
        n => (u64::from(n), 2),
    };
    let len = usize::try_from(len)
        .ok()
        .filter(|len| *len <= max_payload)
        .ok_or(FrameError::TooLarge)?;
    let Some(mask) = bytes
        .get(at..at + 4)
        .and_then(|b| <[u8; 4]>::try_from(b).ok())
    else {
        return Ok(None);
    };
    Ok(Some(Head {
        fin,
        opcode,
        mask,
        len,
        head_len: at + 4,
    }))
}

/// Unmasks `payload` in place, `offset` being the index in the frame's payload of its first byte
/// (a payload read in several pieces is unmasked piece by piece).
pub fn unmask(payload: &mut [u8], mask: [u8; 4], offset: usize) {
    let mut key = mask;
    key.rotate_left(offset % 4);
    let word = u32::from_ne_bytes(key);
    let mut chunks = payload.chunks_exact_mut(4);
    for chunk in &mut chunks {
        let mut bytes = [0u8; 4];
        bytes.copy_from_slice(chunk);
        chunk.copy_from_slice(&(u32::from_ne_bytes(bytes) ^ word).to_ne_bytes());
    }
    for (byte, k) in chunks.into_remainder().iter_mut().zip(key) {
        *byte ^= k;
    }
}

/// Checks a close frame's (unmasked) payload: empty, or a code an endpoint may send followed by a
/// UTF-8 reason. Returns the code (1005, "no status", for an empty payload).
pub fn check_close(payload: &[u8]) -> Result<u16, FrameError> {
    match payload {
        [] => Ok(1005),
        [_] => Err(FrameError::InvalidClose),
        [high, low, reason @ ..] => {
            let code = u16::from_be_bytes([*high, *low]);
            let allowed = matches!(code, 1000..=1003 | 1007..=1011 | 3000..=4999);
            if !allowed {
                return Err(FrameError::InvalidClose);
            }
            std::str::from_utf8(reason).map_err(|_| FrameError::InvalidCloseReason)?;
            Ok(code)
        }
    }
}

/// The longest head of a server frame: 2 bytes and an 8-byte length (no mask).
pub const MAX_SERVER_HEAD: usize = 10;

/// The head of an unmasked server frame carrying `len` bytes; the head is the first `.1` bytes.
pub fn server_head(fin: bool, opcode: Opcode, len: usize) -> ([u8; MAX_SERVER_HEAD], usize) {
    let mut head = [0u8; MAX_SERVER_HEAD];
    head[0] = (u8::from(fin) << 7) | opcode.bits();
    let used = if len < 126 {
        head[1] = len as u8;
        2
    } else if let Ok(short) = u16::try_from(len) {
        head[1] = 126;
        head[2..4].copy_from_slice(&short.to_be_bytes());
        4
    } else {
        head[1] = 127;
        head[2..10].copy_from_slice(&(len as u64).to_be_bytes());
        10
    };
    (head, used)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client_frame(first: u8, payload: &[u8]) -> Vec<u8> {
        let mask = [1, 2, 3, 4];
        let mut out = vec![first];
        match payload.len() {
            n if n < 126 => out.push(0x80 | n as u8),
            n if n < 65536 => {
                out.push(0x80 | 126);
                out.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                out.push(0x80 | 127);
                out.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        out.extend_from_slice(&mask);
        out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        out
    }

    #[test]
    fn heads_of_every_length_form_and_their_payloads() {
        for len in [0, 5, 125, 126, 65535, 65536] {
            let payload: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
            let frame = client_frame(0x82, &payload);
            for cut in 0..frame.len().min(14) {
                let partial = parse_head(&frame[..cut], 1 << 20).unwrap();
                let whole = cut >= parse_head(&frame, 1 << 20).unwrap().unwrap().head_len;
                assert_eq!(partial.is_some(), whole, "len {len} cut {cut}");
            }
            let head = parse_head(&frame, 1 << 20).unwrap().unwrap();
            assert_eq!(
                (head.fin, head.opcode, head.len),
                (true, Opcode::Binary, len)
            );
            let mut body = frame[head.head_len..].to_vec();
            // In two pieces, as a payload read in two reads.
            let (a, b) = body.split_at_mut(len / 3);
            unmask(a, head.mask, 0);
            unmask(b, head.mask, len / 3);
            assert_eq!(body, payload);
        }
    }

    #[test]
    fn what_a_server_refuses() {
        let max = 1000;
        let check = |bytes: Vec<u8>| parse_head(&bytes, max);
        assert_eq!(
            check(client_frame(0xC1, b"x")),
            Err(FrameError::ReservedBits)
        );
        assert_eq!(
            check(client_frame(0x83, b"x")),
            Err(FrameError::UnknownOpcode)
        );
        assert_eq!(check(vec![0x81, 0x01, b'x']), Err(FrameError::Unmasked));
        assert_eq!(
            check(client_frame(0x09, b"x")),
            Err(FrameError::ControlFragmented)
        );
        assert_eq!(
            check(client_frame(0x89, &[0; 126])),
            Err(FrameError::ControlTooLarge)
        );
        assert_eq!(
            check(client_frame(0x82, &[0; 1001])),
            Err(FrameError::TooLarge)
        );
        // A length beyond the maximum is refused from its length bytes, before the mask arrives.
        let mut huge = vec![0x82, 0xFF];
        huge.extend_from_slice(&u64::MAX.to_be_bytes());
        assert_eq!(check(huge), Err(FrameError::TooLarge));
        assert_eq!(FrameError::TooLarge.close_code(), 1009);
        assert_eq!(FrameError::Unmasked.close_code(), 1002);
    }

    #[test]
    fn close_payloads() {
        assert_eq!(check_close(b""), Ok(1005));
        assert_eq!(check_close(&[0x03, 0xE8]), Ok(1000));
        assert_eq!(check_close(&[0x03]), Err(FrameError::InvalidClose));
        assert_eq!(
            check_close(&[0x03, 0xED]),
            Err(FrameError::InvalidClose),
            "1005 is never sent"
        );
        assert_eq!(check_close(&[0x0B, 0xB8, b'o', b'k']), Ok(3000));
        assert_eq!(
            check_close(&[0x03, 0xE8, 0xFF]),
            Err(FrameError::InvalidCloseReason)
        );
    }

    #[test]
    fn server_heads() {
        assert_eq!(
            server_head(true, Opcode::Text, 5),
            ([0x81, 5, 0, 0, 0, 0, 0, 0, 0, 0], 2)
        );
        let (head, used) = server_head(true, Opcode::Binary, 300);
        assert_eq!(&head[..used], &[0x82, 126, 0x01, 0x2C]);
        let (head, used) = server_head(false, Opcode::Text, 70_000);
        assert_eq!(&head[..used], &[0x01, 127, 0, 0, 0, 0, 0, 0x01, 0x11, 0x70]);
    }
}
