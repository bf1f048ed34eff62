//! Stateful reconnect on the session's side: counting received sequenced messages (duplicates resent
//! after a reconnect are dropped), acknowledging them every second, and resuming on the client's next
//! WebSocket with a replay of what it has not acknowledged.

use hubcast_protocol::stateful::ReceivedSequence;
use hubcast_protocol::{Arguments, HubMessage, MessageReader, RawValue, encode_message};
use tokio::sync::oneshot;

use super::Session;
use crate::connection::Inbound;

impl Session {
    /// Waits (at most the disconnect timeout) for the client's next WebSocket, then replays what it
    /// has not acknowledged after a `Sequence`. False when it did not come back or cannot be resumed.
    pub(super) async fn resume(&self, reader: &mut MessageReader, inbound: &mut Inbound) -> bool {
        let options = &self.hub.shared.options;
        self.connection.take_lost();
        let (slot, socket) = oneshot::channel();
        self.connection.await_socket(slot);
        self.connection.stop_writer();
        let socket = tokio::select! {
            _ = self.connection.abort.cancelled() => return false,
            socket = tokio::time::timeout(options.disconnect_timeout, socket) => match socket {
                Ok(Ok(socket)) => socket,
                _ => return false,
            },
        };
        let naming = options.json_naming_policy;
        let replayed = self.hub_connection.replay_after_reconnect(|first| {
            let message: HubMessage<Arguments, RawValue> = HubMessage::Sequence(first);
            encode_message(self.protocol, &message, naming).ok()
        });
        if replayed.is_none() {
            tracing::debug!(connection_id = %self.connection.id, "messages were lost to the replay bound: not resuming");
            return false;
        }
        // Bytes of a message cut off by the drop are useless; the client resends whole messages.
        *reader = MessageReader::new(self.protocol, options.max_message_size());
        *inbound = Inbound::websocket(socket(&self.connection));
        // Whatever the old socket reported while going away is handled.
        self.connection.take_lost();
        tracing::debug!(connection_id = %self.connection.id, "resumed after a stateful reconnect");
        true
    }

    pub(super) fn received(&self) -> Option<std::sync::MutexGuard<'_, ReceivedSequence>> {
        self.sequence
            .as_ref()
            .map(|m| m.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// Acknowledges what was received since the last Ack (every second).
    pub(super) fn send_ack(&self) {
        let Some(id) = self.received().and_then(|mut received| received.ack_due()) else {
            return;
        };
        let message: HubMessage<Arguments, RawValue> = HubMessage::Ack(id);
        if let Ok(bytes) = encode_message(
            self.protocol,
            &message,
            self.hub.shared.options.json_naming_policy,
        ) {
            let _ = self.connection.outbound.push(bytes);
        }
    }

    /// Counts a received sequenced message; false for a duplicate resent after a reconnect.
    pub(super) fn first_time(&self) -> bool {
        self.received()
            .is_none_or(|mut received| received.first_time())
    }
}
