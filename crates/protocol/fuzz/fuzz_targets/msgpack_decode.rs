#![no_main]
//! MessagePack hub protocol: chunked decoding, re-encode round trip, raw value deserialization and
//! transcoding of raw values to JSON.

mod common;

use hubcast_protocol::{NamingPolicy, Protocol, RawValue};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    common::check_stream(Protocol::MessagePack, data, |raw| {
        // Must not panic; errors are fine.
        let _ = RawValue::encode(Protocol::Json, raw, NamingPolicy::AsDeclared);
    });
});
