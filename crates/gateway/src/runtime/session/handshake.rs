//! The handshake: the client's request read within the handshake timeout, the protocol chosen among
//! the hub's and the transport's, or the error reply that ends the connection.

use bytes::{Bytes, BytesMut};
use hubcast_protocol::Transport;
use hubcast_protocol::handshake::{self, HandshakeError, HandshakeRequest};

use crate::connection::{Connection, Inbound, InboundEnd};
use crate::runtime::HubRuntime;

/// How the handshake read ended without a request.
pub(super) enum HandshakeEnd {
    Transport(InboundEnd),
    Refused(HandshakeError),
}

pub(super) async fn read_handshake(
    connection: &Connection,
    inbound: &mut Inbound,
    max: Option<usize>,
) -> Result<(HandshakeRequest, BytesMut), HandshakeEnd> {
    let mut buf = BytesMut::new();
    loop {
        let (chunk, _) = inbound
            .next(connection)
            .await
            .map_err(HandshakeEnd::Transport)?;
        buf.extend_from_slice(&chunk);
        if let Some(request) =
            handshake::parse_request(&mut buf, max).map_err(HandshakeEnd::Refused)?
        {
            return Ok((request, buf));
        }
    }
}

/// Sends a handshake error reply and ends the connection.
pub(super) fn refuse(
    hub: &HubRuntime,
    connection: &Connection,
    error: &HandshakeError,
    detailed: bool,
) {
    hub.shared.metrics.handshake_failures.inc();
    tracing::debug!(connection_id = %connection.id, %error, "handshake refused");
    let text = if detailed {
        error.detailed()
    } else {
        error.to_string()
    };
    connection
        .outbound
        .finish(Some(Bytes::from(handshake::encode_error(&text))), false);
}

pub(super) fn transport_formats(
    transport: Transport,
) -> &'static [hubcast_protocol::TransferFormat] {
    transport.transfer_formats()
}
