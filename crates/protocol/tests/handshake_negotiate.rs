//! The handshake (request parsing, protocol selection, replies) and negotiate (query, version, bodies).

#![allow(clippy::unwrap_used, clippy::panic, clippy::indexing_slicing)]

use bytes::BytesMut;
use hubcast_protocol::handshake::{self, HandshakeError, HandshakeRequest, HandshakeResponse};
use hubcast_protocol::negotiate::{
    NegotiateError, NegotiateRequest, NegotiateResponse, Transport, query_param,
};
use hubcast_protocol::{HubMessage, MessageReader, Protocol, TransferFormat};

const BOTH: [TransferFormat; 2] = [TransferFormat::Text, TransferFormat::Binary];

#[test]
fn handshake_shares_a_buffer_with_the_first_messages() {
    let mut buf = BytesMut::from(
        &b"{\"protocol\":\"messagepack\",\"version\":1,\"extra\":[1]}\x1e\x02\x91\x06"[..],
    );
    let request = handshake::parse_request(&mut buf, Some(32 * 1024))
        .unwrap()
        .unwrap();
    assert_eq!(
        request,
        HandshakeRequest {
            protocol: "messagepack".into(),
            version: 1
        }
    );
    assert_eq!(
        request.select(&Protocol::ALL, &BOTH),
        Ok(Protocol::MessagePack)
    );
    let mut reader = MessageReader::with_buffer(Protocol::MessagePack, None, buf);
    assert_eq!(reader.next_message().unwrap(), Some(HubMessage::Ping));
}

#[test]
fn handshake_selection_rules() {
    let req = |protocol: &str, version| HandshakeRequest {
        protocol: protocol.into(),
        version,
    };
    assert_eq!(
        req("json", 2).select(&Protocol::ALL, &BOTH),
        Ok(Protocol::Json)
    );
    assert_eq!(
        req("json", 3)
            .select(&Protocol::ALL, &BOTH)
            .unwrap_err()
            .to_string(),
        "The server does not support version 3 of the 'json' protocol."
    );
    assert_eq!(
        req("blazorpack", 1)
            .select(&Protocol::ALL, &BOTH)
            .unwrap_err()
            .to_string(),
        "The protocol 'blazorpack' is not supported."
    );
    assert_eq!(
        req("messagepack", 1).select(&[Protocol::Json], &BOTH),
        Err(HandshakeError::UnsupportedProtocol("messagepack".into()))
    );
    assert_eq!(
        req("messagepack", 1)
            .select(&Protocol::ALL, &[TransferFormat::Text])
            .unwrap_err()
            .to_string(),
        "Cannot use the 'messagepack' protocol on the current transport. The transport does not support 'Binary' transfer format."
    );
    assert_eq!(
        req("json", 1).encode(),
        b"{\"protocol\":\"json\",\"version\":1}\x1e"
    );
}

#[test]
fn handshake_replies() {
    assert_eq!(handshake::HANDSHAKE_OK, b"{}\x1e");
    assert_eq!(
        handshake::encode_error("Handshake was canceled."),
        b"{\"error\":\"Handshake was canceled.\"}\x1e"
    );
    let mut ok = BytesMut::from(&b"{}\x1e{\"type\":6}\x1e"[..]);
    assert_eq!(
        handshake::parse_response(&mut ok),
        Ok(Some(HandshakeResponse::Ok))
    );
    assert_eq!(&ok[..], b"{\"type\":6}\x1e");
    let mut err = BytesMut::from(&b"{\"error\":\"nope\"}\x1e"[..]);
    assert_eq!(
        handshake::parse_response(&mut err),
        Ok(Some(HandshakeResponse::Error("nope".into())))
    );
    assert!(handshake::parse_response(&mut BytesMut::from(&b"{\"type\":6}\x1e"[..])).is_err());
}

#[test]
fn negotiate_query_and_version() {
    let q = NegotiateRequest::from_query("NegotiateVersion=1&UseStatefulReconnect=TRUE&x=y");
    assert_eq!(q.negotiate_version.as_deref(), Some("1"));
    assert!(q.use_stateful_reconnect);
    assert_eq!(q.select_version(0), Ok(1));
    assert_eq!(
        NegotiateRequest::from_query("negotiateVersion=7").select_version(0),
        Ok(1)
    );
    assert_eq!(NegotiateRequest::from_query("").select_version(0), Ok(0));
    assert_eq!(
        NegotiateRequest::from_query("").select_version(1),
        Err(NegotiateError::Unsupported(0))
    );
    assert_eq!(
        NegotiateRequest::from_query("negotiateVersion=abc")
            .select_version(0)
            .unwrap_err()
            .to_string(),
        "The client requested a non-integer protocol version."
    );
    assert_eq!(
        NegotiateError::Unsupported(0).to_string(),
        "The client requested version '0', but the server does not support this version."
    );
    assert!(!NegotiateRequest::from_query("useStatefulReconnect=1").use_stateful_reconnect);
    assert_eq!(query_param("ID=a%2Bb&id=zzz", "id").as_deref(), Some("a+b"));
}

#[test]
fn negotiate_bodies_in_dotnet_order() {
    let v1 = NegotiateResponse::connection(1, "cid".into(), "tok".into(), Transport::ALL, true);
    assert_eq!(
        String::from_utf8(v1.to_json()).unwrap(),
        concat!(
            r#"{"useStatefulReconnect":true,"negotiateVersion":1,"connectionId":"cid","connectionToken":"tok","#,
            r#""availableTransports":[{"transport":"WebSockets","transferFormats":["Text","Binary"]},"#,
            r#"{"transport":"ServerSentEvents","transferFormats":["Text"]},"#,
            r#"{"transport":"LongPolling","transferFormats":["Text","Binary"]}]}"#
        )
    );
    let v0 = NegotiateResponse::connection(
        0,
        "cid".into(),
        "tok".into(),
        [Transport::LongPolling],
        false,
    );
    assert_eq!(
        String::from_utf8(v0.to_json()).unwrap(),
        r#"{"negotiateVersion":0,"connectionId":"cid","availableTransports":[{"transport":"LongPolling","transferFormats":["Text","Binary"]}]}"#
    );
    assert_eq!(
        NegotiateResponse::redirect("http://x/hub".into(), Some("t".into())).to_json(),
        br#"{"url":"http://x/hub","accessToken":"t"}"#
    );
    assert_eq!(
        NegotiateResponse::error("no").to_json(),
        br#"{"error":"no"}"#
    );
    assert_eq!(NegotiateResponse::from_json(&v1.to_json()).unwrap(), v1);
}
