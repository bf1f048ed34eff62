#![no_main]
//! JSON hub protocol: chunked decoding, re-encode round trip, raw value deserialization.

mod common;

use hubcast_protocol::Protocol;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    common::check_stream(Protocol::Json, data, |_| {});
});
