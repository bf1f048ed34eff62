//! The per-connection outbound queue: everything the server sends to one client waits here until that
//! client's transport writes it.
//!
//! The queue is bounded in bytes (`transport_max_buffer_size`). A push that would exceed the bound fails
//! instead of waiting, so a broadcast never stalls on one slow client and memory never grows without
//! bound; the caller then closes that client as a slow consumer. Writers take everything queued at once
//! as one buffer ([`Outbound::next_batch`]) and write it with as few syscalls as the transport allows,
//! since SignalR allows several hub messages per WebSocket frame, SSE event or poll response.
//!
//! Small messages are copied into the queue's own buffer rather than queued as shared [`Bytes`]: a
//! copy of a few hundred bytes costs less than the reference count that thousands of connections'
//! writers would otherwise increment and decrement on one cache line from every core, and the batch
//! is then contiguous already. Large messages are queued shared, in order with the copied ones. A
//! writer that frames what it writes (WebSockets) takes the copied messages straight into its own
//! buffer ([`Outbound::next_batch`] with a buffer), so a batch costs no allocation at all.
//!
//! Keep-alive pings are due when nothing was taken for a whole keep-alive period. The connection
//! manager's heartbeat counts that ([`Outbound::keep_alive_tick`]) for every connection at once, so a
//! connection holds no timer of its own and a writer's wait involves nothing but the queue.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use bytes::{Bytes, BytesMut};
use tokio::sync::Notify;

/// Why bytes could not be queued for a client.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PushError {
    /// The queue holds its maximum: the client is not reading fast enough.
    #[error("the client's outbound queue is full")]
    Full,
    /// The connection is finishing; nothing more is accepted.
    #[error("the connection is closed")]
    Closed,
}

/// Messages up to this size are copied into the queue's buffer; larger ones are queued shared.
const COPY_LIMIT: usize = 1024;

/// A queue buffer grown past this by a burst is let go once written, not kept for the next one.
const RETAINED_CAPACITY: usize = 16 * 1024;

/// What a writer gets from [`Outbound::next_batch`].
#[derive(Debug)]
pub(crate) enum Batch {
    /// Messages to write, in order, in one buffer (empty when only a pong is due).
    Data(Bytes),
    /// Messages appended, in order, to the buffer the writer passed; this many bytes.
    Appended(usize),
    /// Nothing was taken for a whole keep-alive period: time for a keep-alive ping.
    Idle,
    /// The connection is finished and everything queued has been handed out.
    Done,
}

#[derive(Debug, Default)]
struct State {
    /// Queued messages before `tail`, when a large message (or a replay) is queued.
    chunks: VecDeque<Bytes>,
    /// The latest small messages, copied; it keeps its allocation from batch to batch.
    tail: BytesMut,
    bytes: usize,
    /// A WebSocket pong owed to the client (written before data).
    pong: Option<Bytes>,
    completed: bool,
    /// The writer took something since the last keep-alive tick.
    taken: bool,
    /// Keep-alive ticks in a row in which the writer took nothing.
    quiet_ticks: u32,
    /// A keep-alive ping is due.
    ping_due: bool,
    /// A producer found the queue full and waits for room ([`Outbound::push_wait`]).
    space_wanted: bool,
}

impl State {
    fn append(&mut self, bytes: Bytes) {
        self.bytes += bytes.len();
        if bytes.len() <= COPY_LIMIT {
            self.tail.extend_from_slice(&bytes);
        } else {
            self.seal_tail();
            self.chunks.push_back(bytes);
        }
    }

    /// Moves the copied messages behind the shared ones.
    fn seal_tail(&mut self) {
        if !self.tail.is_empty() {
            let tail = self.tail.split().freeze();
            self.chunks.push_back(tail);
        }
    }

    fn clear(&mut self) {
        self.chunks.clear();
        self.tail.clear();
        self.bytes = 0;
    }

    fn is_empty(&self) -> bool {
        self.bytes == 0
    }
}

/// A byte-bounded queue with one writer.
#[derive(Debug)]
pub(crate) struct Outbound {
    state: Mutex<State>,
    notify: Notify,
    /// Signalled when a writer takes queued bytes (room for [`Outbound::push_wait`]).
    space: Notify,
    /// A pong is recorded in the state (read without the lock).
    pong_owed: AtomicBool,
    limit: usize,
}

impl Outbound {
    pub(crate) fn new(limit: usize) -> Self {
        Self {
            state: Mutex::new(State::default()),
            notify: Notify::new(),
            space: Notify::new(),
            pong_owed: AtomicBool::new(false),
            limit,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Queues `bytes`, or hands them back with the reason it cannot.
    fn offer(&self, bytes: Bytes) -> Result<(), (PushError, Bytes)> {
        self.offer_with(bytes, |_| {})
    }

    /// Queues `bytes`. A message larger than the limit is accepted only into an empty queue.
    pub(crate) fn push(&self, bytes: Bytes) -> Result<(), PushError> {
        self.offer(bytes).map_err(|(error, _)| error)
    }

    /// Queues `bytes` if there is room, running `on_queued` under the queue's lock (so that a replay
    /// buffer numbers messages in exactly the order they are queued).
    pub(crate) fn offer_with(
        &self,
        bytes: Bytes,
        on_queued: impl FnOnce(&Bytes),
    ) -> Result<(), (PushError, Bytes)> {
        {
            let mut state = self.lock();
            if state.completed {
                return Err((PushError::Closed, bytes));
            }
            if state.bytes > 0 && state.bytes + bytes.len() > self.limit {
                state.space_wanted = true;
                return Err((PushError::Full, bytes));
            }
            on_queued(&bytes);
            state.append(bytes);
        }
        self.notify.notify_one();
        Ok(())
    }

    /// Queues `bytes`, waiting for room instead of failing when the queue is full: for producers that
    /// can wait, such as a stream feeding one client, so that a fast stream slows down to the client's
    /// pace instead of getting the client closed.
    /// `on_queued` runs as in [`offer_with`](Self::offer_with).
    pub(crate) async fn push_wait(
        &self,
        mut bytes: Bytes,
        on_queued: impl Fn(&Bytes),
    ) -> Result<(), PushError> {
        loop {
            let room = self.space.notified();
            tokio::pin!(room);
            // Registered before trying, so a writer taking the queue in between is not missed.
            room.as_mut().enable();
            match self.offer_with(bytes, &on_queued) {
                Ok(()) => return Ok(()),
                Err((PushError::Full, back)) => bytes = back,
                Err((error, _)) => return Err(error),
            }
            room.await;
        }
    }

    /// Queues a final message (a Close) whatever the limit, and marks the queue complete. With
    /// `discard_pending`, what was still queued is dropped first (a slow consumer gets its Close now).
    pub(crate) fn finish(&self, last: Option<Bytes>, discard_pending: bool) {
        {
            let mut state = self.lock();
            if state.completed {
                return;
            }
            if discard_pending {
                state.clear();
            }
            if let Some(last) = last {
                state.append(last);
            }
            state.completed = true;
        }
        self.notify.notify_one();
        self.space.notify_waiters();
    }

    /// Replaces whatever is queued with `items`, whatever the limit (a stateful reconnect's Sequence and
    /// replayed messages; bounded by the replay buffer).
    pub(crate) fn reset_with(&self, items: Vec<Bytes>) {
        {
            let mut state = self.lock();
            state.clear();
            state.bytes = items.iter().map(Bytes::len).sum();
            state.chunks = items.into();
            state.pong = None;
        }
        self.notify.notify_one();
    }

    /// Whether [`finish`](Self::finish) was called.
    pub(crate) fn is_finished(&self) -> bool {
        self.lock().completed
    }

    /// Records a pong to send (WebSocket control frames ride outside the byte bound).
    pub(crate) fn push_pong(&self, payload: Bytes) {
        {
            let mut state = self.lock();
            state.pong = Some(payload);
            // Under the lock: a writer that sees the pong in the state also sees the flag.
            self.pong_owed.store(true, Ordering::Release);
        }
        self.notify.notify_one();
    }

    /// Takes a pending pong, if any. The writer asks before every batch; the flag spares it the lock
    /// when none is owed (a pong recorded meanwhile wakes it, and it finds the flag on the next batch).
    pub(crate) fn take_pong(&self) -> Option<Bytes> {
        if !self.pong_owed.swap(false, Ordering::Acquire) {
            return None;
        }
        self.lock().pong.take()
    }

    /// Takes everything queued now, without waiting: appended to `into` when given and only copied
    /// messages are queued, else as one buffer. `Done` once finished and empty; `Idle` when a
    /// keep-alive ping is due; an empty `Data` when only a pong is owed.
    fn try_batch(&self, into: Option<&mut Vec<u8>>) -> Option<Batch> {
        let mut state = self.lock();
        if state.is_empty() {
            if state.completed {
                return Some(Batch::Done);
            }
            if std::mem::take(&mut state.ping_due) {
                return Some(Batch::Idle);
            }
            return state.pong.is_some().then(|| Batch::Data(Bytes::new()));
        }
        state.taken = true;
        state.ping_due = false;
        // Only a producer that found the queue full waits for room: nobody to wake otherwise.
        let wake_producers = std::mem::take(&mut state.space_wanted);
        let bytes = std::mem::take(&mut state.bytes);
        let batch = if state.chunks.is_empty() {
            let batch = match into {
                Some(into) => {
                    into.extend_from_slice(&state.tail);
                    state.tail.clear();
                    Batch::Appended(bytes)
                }
                None => Batch::Data(state.tail.split().freeze()),
            };
            if state.tail.capacity() > RETAINED_CAPACITY {
                state.tail = BytesMut::new();
            }
            drop(state);
            batch
        } else {
            state.seal_tail();
            let chunks = std::mem::take(&mut state.chunks);
            // Concatenated outside the lock.
            drop(state);
            Batch::Data(concat(chunks, bytes))
        };
        if wake_producers {
            self.space.notify_waiters();
        }
        Some(batch)
    }

    /// Waits for the next batch (see [`try_batch`](Self::try_batch) for `into`).
    pub(crate) async fn next_batch(&self, mut into: Option<&mut Vec<u8>>) -> Batch {
        loop {
            if let Some(batch) = self.try_batch(into.as_deref_mut()) {
                return batch;
            }
            self.notify.notified().await;
        }
    }

    /// One keep-alive tick of the connection manager's heartbeat: after `due` ticks in a row in which
    /// the writer took nothing, a ping is due and the writer is woken to send it.
    pub(crate) fn keep_alive_tick(&self, due: u32) {
        {
            let mut state = self.lock();
            if std::mem::take(&mut state.taken) || state.completed {
                state.quiet_ticks = 0;
                return;
            }
            state.quiet_ticks += 1;
            if state.quiet_ticks < due {
                return;
            }
            state.quiet_ticks = 0;
            state.ping_due = true;
        }
        self.notify.notify_one();
    }
}

/// One buffer for several queued pieces (no copy for a single one).
fn concat(mut chunks: VecDeque<Bytes>, bytes: usize) -> Bytes {
    if chunks.len() == 1 {
        return chunks.pop_front().unwrap_or_default();
    }
    let mut out = BytesMut::with_capacity(bytes);
    chunks.iter().for_each(|chunk| out.extend_from_slice(chunk));
    out.freeze()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(n: usize) -> Bytes {
        Bytes::from(vec![b'x'; n])
    }

    #[test]
    fn bounded_in_bytes_with_room_for_one_large_message() {
        let q = Outbound::new(100);
        assert_eq!(q.push(b(150)), Ok(()));
        assert_eq!(q.push(b(1)), Err(PushError::Full));
        let Some(Batch::Data(payload)) = q.try_batch(None) else {
            panic!()
        };
        assert_eq!(payload.len(), 150);
        assert_eq!(q.push(b(60)), Ok(()));
        assert_eq!(q.push(b(40)), Ok(()));
        assert_eq!(q.push(b(1)), Err(PushError::Full));
    }

    #[test]
    fn finish_discards_pending_and_refuses_more() {
        let q = Outbound::new(100);
        q.push(b(10)).unwrap();
        q.finish(Some(b(3)), true);
        assert_eq!(q.push(b(1)), Err(PushError::Closed));
        let Some(Batch::Data(payload)) = q.try_batch(None) else {
            panic!()
        };
        assert_eq!(payload.len(), 3);
        assert!(matches!(q.try_batch(None), Some(Batch::Done)));
    }

    fn batch(q: &Outbound) -> Bytes {
        match q.try_batch(None) {
            Some(Batch::Data(payload)) => payload,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn copied_and_shared_messages_keep_their_order() {
        let q = Outbound::new(1 << 20);
        let large = Bytes::from(vec![b'L'; COPY_LIMIT + 1]);
        q.push(Bytes::from_static(b"a")).unwrap();
        q.push(large.clone()).unwrap();
        q.push(Bytes::from_static(b"bc")).unwrap();
        q.push(large.clone()).unwrap();
        let mut expected = b"a".to_vec();
        expected.extend_from_slice(&large);
        expected.extend_from_slice(b"bc");
        expected.extend_from_slice(&large);
        assert_eq!(batch(&q), expected);
        // A lone large message is handed out as it is, without a copy.
        q.push(large.clone()).unwrap();
        assert_eq!(batch(&q).as_ptr(), large.as_ptr());
        assert!(q.try_batch(None).is_none());
    }

    #[test]
    fn the_copy_buffer_is_reused_once_written() {
        let q = Outbound::new(1 << 20);
        q.push(Bytes::from_static(b"first")).unwrap();
        let written = batch(&q);
        let address = written.as_ptr();
        drop(written);
        q.push(Bytes::from_static(b"second")).unwrap();
        let next = batch(&q);
        assert_eq!(&next[..], b"second");
        assert_eq!(next.as_ptr(), address);
    }

    #[test]
    fn a_replay_replaces_what_was_queued() {
        let q = Outbound::new(100);
        q.push(Bytes::from_static(b"lost")).unwrap();
        q.reset_with(vec![Bytes::from_static(b"seq"), Bytes::from_static(b"m1")]);
        assert_eq!(&batch(&q)[..], b"seqm1");
        // The byte count followed: the bound applies from an empty queue again.
        assert_eq!(q.push(b(100)), Ok(()));
    }

    #[test]
    fn a_writer_buffer_gets_copied_messages_appended_and_the_queue_keeps_its_own() {
        let q = Outbound::new(1 << 20);
        let mut frame = b"head".to_vec();
        q.push(Bytes::from_static(b"one")).unwrap();
        q.push(Bytes::from_static(b"two")).unwrap();
        assert!(matches!(
            q.try_batch(Some(&mut frame)),
            Some(Batch::Appended(6))
        ));
        assert_eq!(&frame[..], b"headonetwo");
        // A large message goes out shared, with what was copied before it, never into the buffer.
        let large = Bytes::from(vec![b'L'; COPY_LIMIT + 1]);
        q.push(Bytes::from_static(b"a")).unwrap();
        q.push(large.clone()).unwrap();
        let Some(Batch::Data(payload)) = q.try_batch(Some(&mut frame)) else {
            panic!()
        };
        assert_eq!(payload.len(), 1 + large.len());
        assert_eq!(&frame[..], b"headonetwo");
        assert!(q.try_batch(Some(&mut frame)).is_none());
    }

    #[test]
    fn a_ping_is_due_after_quiet_ticks_and_data_postpones_it() {
        let q = Outbound::new(100);
        q.keep_alive_tick(3);
        q.keep_alive_tick(3);
        assert!(q.try_batch(None).is_none());
        q.keep_alive_tick(3);
        assert!(matches!(q.try_batch(None), Some(Batch::Idle)));
        assert!(q.try_batch(None).is_none());
        // Something taken in a tick starts the count again.
        q.keep_alive_tick(3);
        q.keep_alive_tick(3);
        q.push(b(5)).unwrap();
        assert!(matches!(q.try_batch(None), Some(Batch::Data(_))));
        q.keep_alive_tick(3);
        q.keep_alive_tick(3);
        q.keep_alive_tick(3);
        assert!(q.try_batch(None).is_none());
        q.keep_alive_tick(3);
        assert!(matches!(q.try_batch(None), Some(Batch::Idle)));
        // A due ping is dropped when data goes out first, and a finished queue gets none.
        q.keep_alive_tick(1);
        q.push(b(1)).unwrap();
        assert!(matches!(q.try_batch(None), Some(Batch::Data(_))));
        assert!(q.try_batch(None).is_none());
        q.finish(None, false);
        q.keep_alive_tick(1);
        assert!(matches!(q.try_batch(None), Some(Batch::Done)));
    }

    #[test]
    fn a_pong_is_taken_once_and_only_when_owed() {
        let q = Outbound::new(100);
        assert!(q.take_pong().is_none());
        q.push_pong(Bytes::from_static(b"p"));
        assert!(matches!(q.try_batch(None), Some(Batch::Data(ref d)) if d.is_empty()));
        assert_eq!(q.take_pong().as_deref(), Some(&b"p"[..]));
        assert!(q.take_pong().is_none());
        assert!(q.try_batch(None).is_none());
    }

    #[tokio::test]
    async fn a_producer_waiting_for_room_is_woken_when_the_writer_takes_the_queue() {
        let q = std::sync::Arc::new(Outbound::new(10));
        q.push(b(10)).unwrap();
        let waiting = tokio::spawn({
            let q = q.clone();
            async move { q.push_wait(b(5), |_| {}).await }
        });
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished());
        assert!(matches!(q.try_batch(None), Some(Batch::Data(_))));
        let pushed = tokio::time::timeout(std::time::Duration::from_secs(5), waiting)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(pushed, Ok(()));
        assert!(matches!(q.try_batch(None), Some(Batch::Data(ref d)) if d.len() == 5));
    }

    #[tokio::test]
    async fn a_due_ping_wakes_the_waiting_writer() {
        let q = std::sync::Arc::new(Outbound::new(100));
        let waiting = tokio::spawn({
            let q = q.clone();
            async move { q.next_batch(None).await }
        });
        tokio::task::yield_now().await;
        q.keep_alive_tick(1);
        let batch = tokio::time::timeout(std::time::Duration::from_secs(5), waiting)
            .await
            .unwrap()
            .unwrap();
        assert!(matches!(batch, Batch::Idle));
    }
}
