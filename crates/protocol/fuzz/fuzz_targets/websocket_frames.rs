#![no_main]
//! A stream of client WebSocket frames, as the gateway reads it: heads parsed from whatever bytes have
//! arrived (in pieces of every size the input picks), payloads unmasked in two pieces, close payloads
//! checked. Invariants: a head is found only when its bytes are all there and never changes when more
//! bytes arrive; a parsed length is within the maximum; a control frame is final and at most 125 bytes.

use hubcast_protocol::websocket::{self, MAX_HEAD, Opcode};
use libfuzzer_sys::fuzz_target;

const MAX: usize = 4096;

fuzz_target!(|data: &[u8]| {
    let Some((&step, mut rest)) = data.split_first() else { return };
    let step = usize::from(step % 16) + 1;
    loop {
        // The head as the bytes arrive `step` at a time.
        let mut seen = 0;
        let head = loop {
            seen = (seen + step).min(rest.len());
            match websocket::parse_head(&rest[..seen], MAX) {
                Ok(Some(head)) => break Some(head),
                Ok(None) if seen < rest.len() => {}
                Ok(None) => break None,
                Err(error) => {
                    assert!(matches!(error.close_code(), 1002 | 1007 | 1009));
                    // Refused from these bytes, refused from all of them.
                    assert_eq!(websocket::parse_head(rest, MAX), Err(error));
                    return;
                }
            }
        };
        let Some(head) = head else { return };
        assert!(head.head_len <= MAX_HEAD && head.head_len <= seen);
        assert_eq!(websocket::parse_head(rest, MAX), Ok(Some(head)));
        assert!(head.len <= MAX);
        if head.opcode.is_control() {
            assert!(head.fin && head.len <= 125);
        }
        let Some(payload) = rest.get(head.head_len..head.head_len + head.len) else { return };
        let mut once = payload.to_vec();
        websocket::unmask(&mut once, head.mask, 0);
        let mut twice = payload.to_vec();
        let cut = usize::from(step) % (payload.len() + 1);
        let (a, b) = twice.split_at_mut(cut);
        websocket::unmask(a, head.mask, 0);
        websocket::unmask(b, head.mask, cut);
        assert_eq!(once, twice);
        if head.opcode == Opcode::Close {
            let _ = websocket::check_close(&once);
        }
        rest = &rest[head.head_len + head.len..];
    }
});
