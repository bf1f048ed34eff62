#![no_main]
//! Negotiate query parsing and version selection (server side), negotiate response bodies (client side).

use hubcast_protocol::negotiate::{self, MAX_NEGOTIATE_VERSION};
use hubcast_protocol::{NegotiateRequest, NegotiateResponse};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let query = String::from_utf8_lossy(data);
    let request = NegotiateRequest::from_query(&query);
    let _ = request.select_version(0);
    if let Ok(version) = request.select_version(1) {
        assert!((1..=MAX_NEGOTIATE_VERSION).contains(&version), "{version}");
    }
    let _ = negotiate::query_param(&query, "id");

    // Invariant: a body the client accepts survives to_json and a second parse unchanged.
    if let Ok(response) = NegotiateResponse::from_json(data) {
        let json = response.to_json();
        let again = NegotiateResponse::from_json(&json)
            .unwrap_or_else(|e| panic!("to_json gave {:?}, which fails to parse: {e}", String::from_utf8_lossy(&json)));
        assert_eq!(again, response);
    }
});
