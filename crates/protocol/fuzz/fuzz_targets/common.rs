//! Shared by `json_decode` and `msgpack_decode`: incremental decoding in two chunks, a re-encode
//! round trip of every decoded message, and lazy deserialization of every raw value.

use hubcast_protocol::{
    HubMessage, MessageReader, NamingPolicy, Outcome, Protocol, RawValue, decode_all,
    encode_message,
};

/// Feeds `data` to a reader in two chunks (split point derived from the first byte) and checks every
/// message that comes out; `on_raw` is called on each raw argument, item and result.
pub fn check_stream(protocol: Protocol, data: &[u8], on_raw: impl Fn(&RawValue)) {
    let split = data.first().map_or(0, |&b| usize::from(b) % (data.len() + 1));
    let (first, second) = data.split_at(split);
    let mut reader = MessageReader::new(protocol, Some(32 * 1024));
    for chunk in [first, second] {
        reader.push(chunk);
        loop {
            match reader.next_message() {
                Ok(Some(message)) => check_message(protocol, &message, &on_raw),
                Ok(None) => break,
                Err(_) => return,
            }
        }
    }
}

fn check_message(protocol: Protocol, message: &HubMessage, on_raw: &impl Fn(&RawValue)) {
    // Invariant: encoding a decoded message and decoding it again gives the same message.
    let encoded = encode_message(protocol, message, NamingPolicy::AsDeclared)
        .unwrap_or_else(|e| panic!("re-encoding {message:?} failed: {e}"));
    match decode_all(protocol, &encoded, None) {
        Ok(again) => assert_eq!(
            again.as_slice(),
            std::slice::from_ref(message),
            "round trip changed the message; encoded as {encoded:02x?}"
        ),
        Err(e) => panic!("re-encoded {message:?} as {encoded:02x?}, which fails to decode: {e}"),
    }

    let raws: Vec<&RawValue> = match message {
        HubMessage::Invocation(inv) | HubMessage::StreamInvocation(inv) => {
            inv.arguments.iter().collect()
        }
        HubMessage::StreamItem(item) => vec![&item.item],
        HubMessage::Completion(c) => match &c.outcome {
            Outcome::Result(value) => vec![value],
            Outcome::Void | Outcome::Error(_) => vec![],
        },
        _ => vec![],
    };
    for raw in raws {
        // Must not panic; errors are fine.
        let _ = raw.deserialize::<serde_json::Value>();
        on_raw(raw);
    }
}
