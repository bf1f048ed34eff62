//! Stateful reconnect on the client side: the shared bookkeeping of `hubcast_protocol::stateful`
//! (what was sent and not acknowledged, what was received) plus what only a resuming client does:
//! ignore everything that arrives on the new socket until the server's `Sequence`.

use bytes::Bytes;
use hubcast_protocol::stateful::{ReceivedSequence, ReplayBuffer};

/// What to do with a received sequenced message.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Received {
    Process,
    /// Already processed before a reconnect (or arrived before the server's Sequence).
    Drop,
}

#[derive(Debug)]
pub(crate) struct Stateful {
    sent: ReplayBuffer,
    received: ReceivedSequence,
    awaiting_sequence: bool,
}

impl Stateful {
    pub(crate) fn new(limit: usize) -> Self {
        Self {
            sent: ReplayBuffer::new(limit),
            received: ReceivedSequence::default(),
            awaiting_sequence: false,
        }
    }

    /// Numbers and keeps a sequenced message being sent. Past the buffer limit the connection stops
    /// being resumable (the buffer is dropped rather than grown without bound).
    pub(crate) fn sent(&mut self, bytes: &Bytes) {
        self.sent.record(bytes);
    }

    /// The server acknowledged everything up to `id`.
    pub(crate) fn ack(&mut self, id: i64) {
        self.sent.ack(id);
    }

    /// Counts a received sequenced message.
    pub(crate) fn received(&mut self) -> Received {
        if !self.awaiting_sequence && self.received.first_time() {
            Received::Process
        } else {
            Received::Drop
        }
    }

    /// The server's Sequence after a reconnect: where its replay starts.
    pub(crate) fn sequence(&mut self, id: i64) -> Result<(), &'static str> {
        self.received.sequence(id)?;
        self.awaiting_sequence = false;
        Ok(())
    }

    /// The Ack to send now, if anything arrived since the last one.
    pub(crate) fn ack_due(&mut self) -> Option<i64> {
        self.received.ack_due()
    }

    pub(crate) fn resumable(&self) -> bool {
        self.sent.is_complete()
    }

    /// Starts a resume: ignore what arrives until the server's Sequence, and return our Sequence id
    /// with the messages to send again.
    pub(crate) fn resume(&mut self) -> (i64, Vec<Bytes>) {
        self.awaiting_sequence = true;
        self.sent.pending()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn acks_free_the_buffer_and_resume_replays_the_rest() {
        let mut state = Stateful::new(1000);
        for text in ["a", "b", "c"] {
            state.sent(&Bytes::from(text));
        }
        state.ack(1);
        let (first, replay) = state.resume();
        assert_eq!(first, 2);
        assert_eq!(replay, vec![Bytes::from("b"), Bytes::from("c")]);
        state.ack(3);
        assert_eq!(state.resume().0, 4);
    }

    #[test]
    fn duplicates_after_a_sequence_are_dropped() {
        let mut state = Stateful::new(1000);
        for _ in 0..3 {
            assert_eq!(state.received(), Received::Process);
        }
        assert_eq!(state.ack_due(), Some(3));
        assert_eq!(state.ack_due(), None);
        state.resume();
        assert_eq!(state.received(), Received::Drop);
        assert!(state.sequence(5).is_err());
        state.sequence(2).unwrap();
        assert_eq!(state.received(), Received::Drop);
        assert_eq!(state.received(), Received::Drop);
        assert_eq!(state.received(), Received::Process);
        assert_eq!(state.ack_due(), Some(4));
    }

    #[test]
    fn overflow_makes_the_connection_not_resumable() {
        let mut state = Stateful::new(3);
        state.sent(&Bytes::from("ab"));
        assert!(state.resumable());
        state.sent(&Bytes::from("cd"));
        assert!(!state.resumable());
        assert_eq!(state.resume(), (3, vec![]));
    }
}
