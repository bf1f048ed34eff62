//! Stateful reconnect bookkeeping, the same on both sides of a connection (protocol notes §3): what a
//! side sent and the other has not acknowledged yet ([`ReplayBuffer`]), and what it received
//! ([`ReceivedSequence`]: Ack ids, duplicates after a Sequence). Sequenced messages are types 1–5
//! ([`crate::HubMessage::is_sequenced`]), numbered from 1.

use std::collections::VecDeque;

use bytes::Bytes;

/// Sent sequenced messages not yet acknowledged, with their ids.
///
/// The buffer is bounded. ASP.NET Core makes senders wait when it is full; hubcast never makes a
/// sender wait for one peer, so past the bound the buffer is dropped and the connection is marked as
/// no longer resumable ([`is_complete`](Self::is_complete) turns false): it keeps working, but a later
/// drop ends it.
#[derive(Debug)]
pub struct ReplayBuffer {
    entries: VecDeque<(i64, Bytes)>,
    bytes: usize,
    next: i64,
    limit: usize,
    overflowed: bool,
}

impl ReplayBuffer {
    /// An empty buffer holding at most `limit` bytes.
    pub fn new(limit: usize) -> Self {
        Self {
            entries: VecDeque::new(),
            bytes: 0,
            next: 1,
            limit,
            overflowed: false,
        }
    }

    /// Numbers and keeps a sequenced message being sent.
    pub fn record(&mut self, bytes: &Bytes) {
        self.next += 1;
        if self.overflowed {
            return;
        }
        self.entries.push_back((self.next - 1, bytes.clone()));
        self.bytes += bytes.len();
        if self.bytes > self.limit {
            self.overflowed = true;
            self.entries.clear();
            self.bytes = 0;
        }
    }

    /// The peer has everything up to `id`.
    pub fn ack(&mut self, id: i64) {
        while self.entries.front().is_some_and(|(seq, _)| *seq <= id) {
            if let Some((_, acked)) = self.entries.pop_front() {
                self.bytes -= acked.len();
            }
        }
    }

    /// Whether everything unacknowledged is still here (the connection can be resumed).
    pub fn is_complete(&self) -> bool {
        !self.overflowed
    }

    /// The id to announce in the `Sequence` after a reconnect, and the messages to send again.
    pub fn pending(&self) -> (i64, Vec<Bytes>) {
        let first = self.entries.front().map_or(self.next, |(seq, _)| *seq);
        (
            first,
            self.entries
                .iter()
                .map(|(_, bytes)| bytes.clone())
                .collect(),
        )
    }
}

/// What a side received: the id of each sequenced message, the highest one handled, and the last
/// one acknowledged.
#[derive(Debug, Default)]
pub struct ReceivedSequence {
    /// Id of the last sequenced message received (set back by a Sequence message).
    current: i64,
    /// Highest id handled: anything at or below it after a Sequence is a duplicate.
    processed: i64,
    /// Highest id acknowledged.
    acked: i64,
}

impl ReceivedSequence {
    /// Counts a received sequenced message; false for a duplicate sent again after a reconnect.
    pub fn first_time(&mut self) -> bool {
        self.current += 1;
        if self.current <= self.processed {
            return false;
        }
        self.processed = self.current;
        true
    }

    /// The peer's `Sequence(id)` after a reconnect: its resend starts at `id`.
    pub fn sequence(&mut self, id: i64) -> Result<(), &'static str> {
        if id < 0 {
            return Err("Sequence ID must not be negative.");
        }
        if id > self.processed + 1 {
            return Err("Sequence ID greater than amount of messages we've received.");
        }
        self.current = id - 1;
        Ok(())
    }

    /// The id to acknowledge now, if anything was handled since the last Ack.
    pub fn ack_due(&mut self) -> Option<i64> {
        (self.processed > self.acked).then(|| {
            self.acked = self.processed;
            self.processed
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_acks_and_overflows() {
        let mut replay = ReplayBuffer::new(10);
        for text in ["aa", "bb", "cc"] {
            replay.record(&Bytes::from(text));
        }
        assert_eq!(
            replay.pending(),
            (
                1,
                vec![Bytes::from("aa"), Bytes::from("bb"), Bytes::from("cc")]
            )
        );
        replay.ack(2);
        assert_eq!(replay.pending(), (3, vec![Bytes::from("cc")]));
        replay.ack(3);
        assert_eq!(replay.pending(), (4, vec![]));
        assert!(replay.is_complete());
        replay.record(&Bytes::from("0123456789ab"));
        assert!(!replay.is_complete());
        assert_eq!(replay.pending(), (5, vec![]));
    }

    #[test]
    fn duplicates_after_a_sequence_are_dropped() {
        let mut received = ReceivedSequence::default();
        assert!((0..3).all(|_| received.first_time()));
        assert_eq!(received.ack_due(), Some(3));
        assert_eq!(received.ack_due(), None);
        assert!(received.sequence(5).is_err());
        assert!(received.sequence(-1).is_err());
        received.sequence(2).unwrap();
        assert!(!received.first_time());
        assert!(!received.first_time());
        assert!(received.first_time());
        assert_eq!(received.ack_due(), Some(4));
    }
}
