//! The server's half of stateful reconnect (protocol notes §3): every sequenced message sent (types
//! 1-5) is numbered from 1 and kept with its bytes until the client acknowledges it, so that after an
//! ungraceful WebSocket drop the client can come back on a new socket and get a `Sequence` followed by
//! everything it may have missed.
//!
//! The buffer is bounded (`stateful_reconnect_buffer_size`). ASP.NET Core makes senders wait when it is
//! full; hubcast never makes a broadcast wait for one client, so instead the oldest messages are dropped
//! and the connection is marked as no longer resumable: it keeps working, but a later drop ends it.

use std::collections::VecDeque;

use bytes::Bytes;

/// Sent messages not yet acknowledged.
#[derive(Debug)]
pub(crate) struct Replay {
    entries: VecDeque<(i64, Bytes)>,
    bytes: usize,
    next: i64,
    limit: usize,
    overflowed: bool,
}

impl Replay {
    pub(crate) fn new(limit: usize) -> Self {
        Self {
            entries: VecDeque::new(),
            bytes: 0,
            next: 1,
            limit,
            overflowed: false,
        }
    }

    /// Numbers and keeps a message that is being sent.
    pub(crate) fn record(&mut self, bytes: &Bytes) {
        self.entries.push_back((self.next, bytes.clone()));
        self.next += 1;
        self.bytes += bytes.len();
        while self.bytes > self.limit {
            let Some((_, dropped)) = self.entries.pop_front() else {
                break;
            };
            self.bytes -= dropped.len();
            self.overflowed = true;
        }
    }

    /// The client has everything up to `id`.
    pub(crate) fn ack(&mut self, id: i64) {
        while self.entries.front().is_some_and(|(seq, _)| *seq <= id) {
            if let Some((_, acked)) = self.entries.pop_front() {
                self.bytes -= acked.len();
            }
        }
    }

    /// Whether everything unacknowledged is still here.
    pub(crate) fn is_complete(&self) -> bool {
        !self.overflowed
    }

    /// The id to announce in the `Sequence` after a reconnect, and the messages to send again.
    pub(crate) fn pending(&self) -> (i64, Vec<Bytes>) {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_acks_and_overflows() {
        let mut replay = Replay::new(10);
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
    }
}
