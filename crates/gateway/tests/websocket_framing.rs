//! RFC 6455 on the server side (issue 17, items 8 and 9), with hand-made frames on a raw socket: every
//! violation ends with a hub Close message carrying an error and a close frame with the RFC's code
//! (1002, 1007, 1009), never a clean 1000; a split UTF-8 character across Text fragments is fine; after
//! the close handshake the server closes the TCP connection at once.

#![allow(clippy::unwrap_used, clippy::panic, clippy::indexing_slicing)]

mod common;

use std::time::{Duration, Instant};

use common::*;
use hubcast_gateway::HubOptions;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const FIN: u8 = 0x80;
const TEXT: u8 = 0x1;
const CONTINUATION: u8 = 0x0;
const CLOSE: u8 = 0x8;
const PING: u8 = 0x9;

/// One frame: `first` is the first byte (FIN, RSV, opcode); masked with a fixed key unless told not.
fn frame(first: u8, payload: &[u8], masked: bool) -> Vec<u8> {
    let mut out = vec![first];
    let mask_bit = if masked { 0x80 } else { 0 };
    match payload.len() {
        n if n < 126 => out.push(mask_bit | n as u8),
        n if n < 65536 => {
            out.push(mask_bit | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(mask_bit | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    if masked {
        let key = [1u8, 2, 3, 4];
        out.extend_from_slice(&key);
        out.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
    } else {
        out.extend_from_slice(payload);
    }
    out
}

/// A WebSocket to `/hub` (skip negotiation) that completed the JSON hub handshake.
async fn connect(server: &TestServer) -> TcpStream {
    let mut stream = TcpStream::connect(server.addr).await.unwrap();
    stream
        .write_all(
            b"GET /hub HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
              Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
        )
        .await
        .unwrap();
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        head.push(stream.read_u8().await.unwrap());
    }
    assert!(head.starts_with(b"HTTP/1.1 101"));
    let handshake = b"{\"protocol\":\"json\",\"version\":1}\x1e";
    stream
        .write_all(&frame(FIN | TEXT, handshake, true))
        .await
        .unwrap();
    let (opcode, payload) = read_frame(&mut stream).await.unwrap();
    assert_eq!((opcode, payload.as_slice()), (TEXT, &b"{}\x1e"[..]));
    stream
}

/// The next server frame: opcode and payload; `None` at end of stream.
async fn read_frame(stream: &mut TcpStream) -> Option<(u8, Vec<u8>)> {
    let first = stream.read_u8().await.ok()?;
    let len = match stream.read_u8().await.ok()? & 0x7f {
        126 => u64::from(stream.read_u16().await.ok()?),
        127 => stream.read_u64().await.ok()?,
        n => u64::from(n),
    };
    let mut payload = vec![0; len as usize];
    stream.read_exact(&mut payload).await.ok()?;
    Some((first & 0x0f, payload))
}

/// Reads to the close frame: the texts before it and its code.
async fn until_close(stream: &mut TcpStream) -> (Vec<String>, u16) {
    let mut texts = Vec::new();
    let read = async {
        while let Some((opcode, payload)) = read_frame(stream).await {
            match opcode {
                CLOSE => return u16::from_be_bytes([payload[0], payload[1]]),
                TEXT => texts.push(String::from_utf8_lossy(&payload).into_owned()),
                _ => {}
            }
        }
        panic!("no close frame");
    };
    let code = tokio::time::timeout(Duration::from_secs(5), read)
        .await
        .unwrap();
    (texts, code)
}

async fn violation(bytes: Vec<u8>) -> (Vec<String>, u16) {
    let server = start(HubOptions::default()).await;
    let mut stream = connect(&server).await;
    stream.write_all(&bytes).await.unwrap();
    until_close(&mut stream).await
}

#[tokio::test]
async fn violations_close_with_the_rfc_code_after_a_close_message_with_an_error() {
    let echo = b"{\"type\":1,\"target\":\"Echo\",\"arguments\":[\"x\"]}\x1e";
    let mut too_big = vec![FIN | TEXT, 0xff];
    too_big.extend_from_slice(&(2u64 << 20).to_be_bytes());
    too_big.extend_from_slice(&[1, 2, 3, 4]);
    let cases: Vec<(&str, Vec<u8>, u16)> = vec![
        ("unmasked frame", frame(FIN | TEXT, echo, false), 1002),
        (
            "continuation without a message",
            frame(FIN | CONTINUATION, echo, true),
            1002,
        ),
        ("reserved bit", frame(FIN | 0x40 | TEXT, echo, true), 1002),
        ("unknown opcode", frame(FIN | 0x3, b"x", true), 1002),
        ("oversize ping", frame(FIN | PING, &[0; 200], true), 1002),
        ("fragmented ping", frame(PING, b"x", true), 1002),
        (
            "new message inside a fragmented one",
            [frame(TEXT, b"{", true), frame(FIN | TEXT, b"}", true)].concat(),
            1002,
        ),
        (
            "invalid UTF-8",
            frame(FIN | TEXT, b"\xff\xfe\x1e", true),
            1007,
        ),
        (
            "invalid UTF-8 across fragments",
            [
                frame(TEXT, b"\"\xe2\x82", true),
                frame(FIN | CONTINUATION, b"\x28\"", true),
            ]
            .concat(),
            1007,
        ),
        ("frame over the limit", too_big, 1009),
        (
            "one-byte close payload",
            frame(FIN | CLOSE, &[3], true),
            1002,
        ),
        (
            "close code no endpoint may send",
            frame(FIN | CLOSE, &1005u16.to_be_bytes(), true),
            1002,
        ),
        (
            "close reason that is not UTF-8",
            frame(FIN | CLOSE, &[0x03, 0xE8, 0xFF], true),
            1007,
        ),
    ];
    for (what, bytes, code) in cases {
        let (texts, got) = violation(bytes).await;
        assert_eq!(got, code, "{what}");
        let close = texts
            .last()
            .unwrap_or_else(|| panic!("{what}: no Close message"));
        assert!(
            close.contains("\"type\":7") && close.contains("\"error\""),
            "{what}: {close}"
        );
    }
}

#[tokio::test]
async fn a_character_split_across_text_fragments_is_fine() {
    let server = start(HubOptions::default()).await;
    let mut stream = connect(&server).await;
    // "€" is e2 82 ac; the fragment boundary falls inside it.
    let first = b"{\"type\":1,\"invocationId\":\"1\",\"target\":\"Echo\",\"arguments\":[\"\xe2\x82";
    let second = b"\xac\"]}\x1e";
    stream
        .write_all(
            &[
                frame(TEXT, first, true),
                frame(FIN | CONTINUATION, second, true),
            ]
            .concat(),
        )
        .await
        .unwrap();
    let (opcode, payload) = read_frame(&mut stream).await.unwrap();
    assert_eq!(opcode, TEXT);
    let text = String::from_utf8(payload).unwrap();
    assert!(text.contains("\"result\":\"€\""), "{text}");
}

#[tokio::test]
async fn the_tcp_connection_ends_right_after_the_close_handshake() {
    let server = start(HubOptions::default()).await;
    let mut stream = connect(&server).await;
    stream
        .write_all(&frame(FIN | CLOSE, &1000u16.to_be_bytes(), true))
        .await
        .unwrap();
    let started = Instant::now();
    let (_, code) = until_close(&mut stream).await;
    assert_eq!(code, 1000);
    let mut rest = Vec::new();
    tokio::time::timeout(Duration::from_secs(2), stream.read_to_end(&mut rest))
        .await
        .expect("the server held the TCP connection open after the close handshake")
        .unwrap();
    assert!(started.elapsed() < Duration::from_secs(2));
}
