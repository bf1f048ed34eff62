//! The load generator's side of each server's protocol, kept minimal: connect (from a chosen
//! 127.0.0.x source address), become a receiver of the benchmark's messages, read payloads, and
//! publish. Three kinds:
//!
//! - **hubcast** (SignalR, JSON or MessagePack; `/bench` hub of `hubcast serve --conformance`):
//!   optional negotiate, handshake, `Join("bench")` for group fan-out; publishes with non-blocking
//!   invocations of `Broadcast`, `SendToGroup` or `SendToUser`; receives `Broadcast(payload)`.
//! - **socketio** (Engine.IO v4 over WebSocket, for Socket.IO and socketioxide): `0{…}` open packet,
//!   `40` connect, `42["publish",payload]` out, `42["msg",payload]` in, pings `2` answered with `3`.
//! - **ceiling** (`hubcast-ceiling`): receivers on `/`, the publisher on `/publish`, raw text frames.

use std::net::{IpAddr, SocketAddr};

use anyhow::{Context, bail};
use bytes::Bytes;
use fastwebsockets::{FragmentCollector, Frame, OpCode, Payload};
use http_body_util::{BodyExt, Empty};
use hubcast_protocol::{
    HubMessage, Invocation, MessageReader, NamingPolicy, NegotiateResponse, Protocol,
    encode_message,
};
use hyper::upgrade::Upgraded;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::{TcpSocket, TcpStream};

/// The group every receiver joins, and the user every receiver is (user fan-out).
pub(crate) const GROUP: &str = "bench";
pub(crate) const USER: &str = "loadgen";

/// Which server protocol to speak.
#[derive(Debug, Clone)]
pub(crate) enum Kind {
    Hubcast {
        protocol: Protocol,
        path: String,
        negotiate: bool,
        /// Bearer token (user fan-out needs an authenticated user).
        token: Option<String>,
    },
    SocketIo,
    Ceiling,
}

/// What a publish reaches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Audience {
    /// Every connection.
    All,
    /// The group `bench` every receiver joined.
    Group,
    /// The user `loadgen` every receiver is.
    User,
}

impl Kind {
    pub(crate) fn name(&self) -> String {
        match self {
            Kind::Hubcast { protocol, .. } => format!("hubcast {protocol}"),
            Kind::SocketIo => "socket.io".to_owned(),
            Kind::Ceiling => "ceiling".to_owned(),
        }
    }
}

pub(crate) struct Conn {
    ws: FragmentCollector<TokioIo<Upgraded>>,
    flavor: Flavor,
}

enum Flavor {
    Hub(MessageReader),
    SocketIo,
    Raw,
}

async fn tcp(server: SocketAddr, source: IpAddr) -> anyhow::Result<TcpStream> {
    let socket = TcpSocket::new_v4()?;
    socket.bind(SocketAddr::new(source, 0))?;
    let stream = socket.connect(server).await?;
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// `POST {path}/negotiate?negotiateVersion=1` on a connection of its own; returns the token.
async fn negotiate(
    server: SocketAddr,
    source: IpAddr,
    path: &str,
    token: Option<&str>,
) -> anyhow::Result<String> {
    let stream = tcp(server, source).await?;
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(connection);
    let mut request = http::Request::post(format!("{path}/negotiate?negotiateVersion=1"))
        .header("host", server.to_string());
    if let Some(token) = token {
        request = request.header("authorization", format!("Bearer {token}"));
    }
    let response = sender
        .send_request(request.body(Empty::<Bytes>::new())?)
        .await?;
    if !response.status().is_success() {
        bail!("negotiate answered {}", response.status());
    }
    let body = response.into_body().collect().await?.to_bytes();
    let negotiated = NegotiateResponse::from_json(&body)?;
    negotiated
        .connection_token
        .or(negotiated.connection_id)
        .context("negotiate gave no connection token")
}

async fn upgrade(
    server: SocketAddr,
    source: IpAddr,
    path_and_query: &str,
    token: Option<&str>,
) -> anyhow::Result<FragmentCollector<TokioIo<Upgraded>>> {
    let stream = tcp(server, source).await?;
    let mut request = http::Request::get(path_and_query)
        .header("host", server.to_string())
        .header("upgrade", "websocket")
        .header("connection", "upgrade")
        .header(
            "sec-websocket-key",
            fastwebsockets::handshake::generate_key(),
        )
        .header("sec-websocket-version", "13");
    if let Some(token) = token {
        request = request.header("authorization", format!("Bearer {token}"));
    }
    let (ws, _) = fastwebsockets::handshake::client(
        &TokioExecutor::new(),
        request.body(Empty::<Bytes>::new())?,
        stream,
    )
    .await?;
    Ok(FragmentCollector::new(ws))
}

impl Conn {
    /// Connects and completes the protocol's handshake. `publisher` picks the ceiling's publish path.
    pub(crate) async fn open(
        kind: &Kind,
        server: SocketAddr,
        source: IpAddr,
        publisher: bool,
    ) -> anyhow::Result<Conn> {
        match kind {
            Kind::Hubcast {
                protocol,
                path,
                negotiate: with_negotiate,
                token,
            } => {
                let target = if *with_negotiate {
                    let id = negotiate(server, source, path, token.as_deref()).await?;
                    format!("{path}?id={id}")
                } else {
                    path.clone()
                };
                let mut ws = upgrade(server, source, &target, token.as_deref()).await?;
                let handshake =
                    format!("{{\"protocol\":\"{}\",\"version\":1}}\x1e", protocol.name());
                ws.write_frame(Frame::text(Payload::Owned(handshake.into_bytes())))
                    .await?;
                let reply = ws.read_frame().await?;
                let Some(rest) = reply.payload.strip_prefix(b"{}\x1e") else {
                    bail!(
                        "handshake refused: {}",
                        String::from_utf8_lossy(&reply.payload)
                    );
                };
                let mut reader = MessageReader::new(*protocol, None);
                reader.push(rest);
                Ok(Conn {
                    ws,
                    flavor: Flavor::Hub(reader),
                })
            }
            Kind::SocketIo => {
                let mut ws = upgrade(
                    server,
                    source,
                    "/socket.io/?EIO=4&transport=websocket",
                    None,
                )
                .await?;
                let open = ws.read_frame().await?;
                if open.payload.first() != Some(&b'0') {
                    bail!("expected an Engine.IO open packet");
                }
                ws.write_frame(Frame::text(Payload::Borrowed(b"40")))
                    .await?;
                loop {
                    let frame = ws.read_frame().await?;
                    if frame.payload.starts_with(b"40") {
                        break;
                    }
                    // socketioxide pings right away, often before its `40{…}`.
                    if *frame.payload == *b"2" {
                        ws.write_frame(Frame::text(Payload::Borrowed(b"3"))).await?;
                        continue;
                    }
                    if frame.payload.starts_with(b"44") {
                        bail!(
                            "namespace connect refused: {}",
                            String::from_utf8_lossy(&frame.payload)
                        );
                    }
                }
                Ok(Conn {
                    ws,
                    flavor: Flavor::SocketIo,
                })
            }
            Kind::Ceiling => {
                let path = if publisher { "/publish" } else { "/" };
                Ok(Conn {
                    ws: upgrade(server, source, path, None).await?,
                    flavor: Flavor::Raw,
                })
            }
        }
    }

    async fn invoke_hub(
        &mut self,
        target: &str,
        args: &[&str],
        id: Option<&str>,
    ) -> anyhow::Result<()> {
        let Flavor::Hub(reader) = &self.flavor else {
            bail!("not a hub connection");
        };
        let protocol = reader.protocol();
        let mut call: Invocation<Vec<&str>> = Invocation::new(target, args.to_vec());
        call.invocation_id = id.map(str::to_owned);
        let bytes = encode_message(
            protocol,
            &HubMessage::<_, ()>::Invocation(call),
            NamingPolicy::CamelCase,
        )?;
        let opcode = if protocol == Protocol::MessagePack {
            OpCode::Binary
        } else {
            OpCode::Text
        };
        self.ws
            .write_frame(Frame::new(true, opcode, None, Payload::Borrowed(&bytes)))
            .await?;
        Ok(())
    }

    /// Makes this connection a receiver of `audience` (hubcast groups need a `Join`).
    pub(crate) async fn subscribe(&mut self, audience: Audience) -> anyhow::Result<()> {
        if !matches!(self.flavor, Flavor::Hub(_)) || audience != Audience::Group {
            return Ok(());
        }
        self.invoke_hub("Join", &[GROUP], Some("0")).await?;
        loop {
            match self.next_message().await? {
                Some(Incoming::Completion) => return Ok(()),
                Some(Incoming::Payload(_)) => {}
                None => bail!("closed while joining"),
            }
        }
    }

    /// Publishes one payload to `audience` (Socket.IO peers and the ceiling only know "all").
    pub(crate) async fn publish(
        &mut self,
        audience: Audience,
        payload: &str,
    ) -> anyhow::Result<()> {
        let frame = match self.flavor {
            Flavor::Hub(_) => {
                return match audience {
                    Audience::All => self.invoke_hub("Broadcast", &[payload], None).await,
                    Audience::Group => {
                        self.invoke_hub("SendToGroup", &[GROUP, payload], None)
                            .await
                    }
                    Audience::User => self.invoke_hub("SendToUser", &[USER, payload], None).await,
                };
            }
            Flavor::SocketIo => format!("42[\"publish\",\"{payload}\"]").into_bytes(),
            Flavor::Raw => payload.as_bytes().to_vec(),
        };
        self.ws
            .write_frame(Frame::text(Payload::Owned(frame)))
            .await?;
        Ok(())
    }

    /// The next payload received (`None` once the server closed the connection).
    pub(crate) async fn next_payload(&mut self) -> anyhow::Result<Option<Bytes>> {
        loop {
            match self.next_message().await? {
                Some(Incoming::Payload(payload)) => return Ok(Some(payload)),
                Some(Incoming::Completion) => {}
                None => return Ok(None),
            }
        }
    }

    async fn next_message(&mut self) -> anyhow::Result<Option<Incoming>> {
        loop {
            if let Flavor::Hub(reader) = &mut self.flavor {
                while let Some(body) = reader.next_body()? {
                    let protocol = reader.protocol();
                    if let Some(payload) = broadcast_payload(protocol, &body) {
                        return Ok(Some(Incoming::Payload(body.slice_ref(payload))));
                    }
                    let message = match protocol {
                        Protocol::Json => hubcast_protocol::json::decode(&body)?,
                        Protocol::MessagePack => hubcast_protocol::msgpack::decode(&body)?,
                    };
                    // Messages of unknown types are skipped, as the reader's own decoding does.
                    let Some(message) = message else { continue };
                    match message {
                        HubMessage::Invocation(call) if call.target == "Broadcast" => {
                            let text: String = call
                                .arguments
                                .get(0)
                                .context("Broadcast without argument")?
                                .deserialize()?;
                            return Ok(Some(Incoming::Payload(Bytes::from(text))));
                        }
                        HubMessage::Completion(_) => return Ok(Some(Incoming::Completion)),
                        HubMessage::Close(close) => {
                            bail!("server closed the connection: {:?}", close.error)
                        }
                        _ => {}
                    }
                }
            }
            let frame = self.ws.read_frame().await?;
            match frame.opcode {
                OpCode::Close => return Ok(None),
                OpCode::Text | OpCode::Binary => {}
                _ => continue,
            }
            let payload: &[u8] = &frame.payload;
            match &mut self.flavor {
                Flavor::Hub(reader) => reader.push(payload),
                Flavor::Raw => return Ok(Some(Incoming::Payload(Bytes::copy_from_slice(payload)))),
                // Engine.IO: a ping is answered at once; an event is `42["msg",<payload>]`.
                Flavor::SocketIo if payload == b"2" => {
                    self.ws
                        .write_frame(Frame::text(Payload::Borrowed(b"3")))
                        .await?;
                }
                Flavor::SocketIo => {
                    if let Some(event) = payload.strip_prefix(b"42[\"msg\",\"") {
                        let text = event.strip_suffix(b"\"]").context("malformed event")?;
                        return Ok(Some(Incoming::Payload(Bytes::copy_from_slice(text))));
                    }
                }
            }
        }
    }
}

/// The argument of a `Broadcast(string)` invocation read straight from its bytes, as the Engine.IO
/// path reads `42["msg",…]`: the receive side costs about the same for every server. `None` for
/// anything else (other messages, escapes in the string), which the full decoder then reads.
fn broadcast_payload(protocol: Protocol, body: &[u8]) -> Option<&[u8]> {
    match protocol {
        Protocol::Json => {
            let text = body
                .strip_prefix(br#"{"type":1,"target":"Broadcast","arguments":[""#)?
                .strip_suffix(br#""]}"#)?;
            (!text.contains(&b'\\')).then_some(text)
        }
        Protocol::MessagePack => {
            // [1, {}, nil, "Broadcast", [payload]] and, from some senders, a trailing [] of stream ids.
            let rest = body
                .strip_prefix(b"\x95")
                .or_else(|| body.strip_prefix(b"\x96"))?
                .strip_prefix(b"\x01\x80\xc0\xa9Broadcast\x91")?;
            let (&marker, rest) = rest.split_first()?;
            let (len, rest) = match marker {
                0xa0..=0xbf => (usize::from(marker & 0x1f), rest),
                0xd9 => (usize::from(*rest.first()?), rest.get(1..)?),
                0xda => (
                    usize::from(u16::from_be_bytes([*rest.first()?, *rest.get(1)?])),
                    rest.get(2..)?,
                ),
                _ => return None,
            };
            let (text, tail) = (rest.get(..len)?, rest.get(len..)?);
            matches!(tail, [] | [0x90]).then_some(text)
        }
    }
}

enum Incoming {
    Payload(Bytes),
    Completion,
}

#[cfg(test)]
mod tests {
    use super::*;
    use hubcast_protocol::SerializedMessage;

    /// A `Broadcast(text)` as the gateway serializes it, without its framing.
    fn broadcast(protocol: Protocol, text: &str) -> Bytes {
        let call: Invocation<Vec<String>> = Invocation::new("Broadcast", vec![text.to_owned()]);
        let message = SerializedMessage::new(
            HubMessage::<_, ()>::Invocation(call),
            NamingPolicy::CamelCase,
        );
        let mut reader = MessageReader::new(protocol, None);
        reader.push(message.get(protocol).expect("encoded"));
        reader.next_body().expect("framed").expect("complete")
    }

    #[test]
    fn broadcast_arguments_are_read_without_decoding() {
        for protocol in [Protocol::Json, Protocol::MessagePack] {
            for size in [1, 31, 32, 100, 255, 256, 4000] {
                let text = "x".repeat(size);
                let body = broadcast(protocol, &text);
                assert_eq!(
                    broadcast_payload(protocol, &body),
                    Some(text.as_bytes()),
                    "{protocol} {size}"
                );
            }
        }
    }

    #[test]
    fn anything_else_is_left_to_the_decoder() {
        let escaped = broadcast(Protocol::Json, "a\"b");
        assert_eq!(broadcast_payload(Protocol::Json, &escaped), None);
        let call: Invocation<Vec<&str>> = Invocation::new("Other", vec!["x"]);
        for protocol in [Protocol::Json, Protocol::MessagePack] {
            let bytes = encode_message(
                protocol,
                &HubMessage::<_, ()>::Invocation(call.clone()),
                NamingPolicy::CamelCase,
            )
            .expect("encoded");
            let mut reader = MessageReader::new(protocol, None);
            reader.push(&bytes);
            let body = reader.next_body().expect("framed").expect("complete");
            assert_eq!(broadcast_payload(protocol, &body), None, "{protocol}");
        }
    }
}
