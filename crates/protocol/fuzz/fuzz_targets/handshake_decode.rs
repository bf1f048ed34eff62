#![no_main]
//! Handshake request (server side) and response (client side) parsing.

use bytes::BytesMut;
use hubcast_protocol::handshake;
use hubcast_protocol::{Protocol, TransferFormat};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut buf = BytesMut::from(data);
    if let Ok(Some(request)) = handshake::parse_request(&mut buf, Some(1024)) {
        // The request and its 0x1E are consumed; the rest stays for the hub protocol.
        let end = data.iter().position(|&b| b == 0x1e).expect("separator");
        assert_eq!(&buf[..], &data[end + 1..]);
        if let Err(e) = request.select(&Protocol::ALL, &[TransferFormat::Text]) {
            let _ = e.detailed();
        }
        // Invariant: what a client would send for this request parses back to it.
        let mut encoded = BytesMut::from(&request.encode()[..]);
        let again = handshake::parse_request(&mut encoded, None);
        assert_eq!(again, Ok(Some(request)));
    }
    let _ = handshake::parse_response(&mut BytesMut::from(data));
});
