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
//! is then contiguous already. Large messages are queued shared, in order with the copied ones.

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::Mutex;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::sync::Notify;
use tokio::time::{Instant, Sleep};

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
    /// Nothing was queued for the whole idle period: time for a keep-alive ping.
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
    limit: usize,
}

impl Outbound {
    pub(crate) fn new(limit: usize) -> Self {
        Self {
            state: Mutex::new(State::default()),
            notify: Notify::new(),
            space: Notify::new(),
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
        self.lock().pong = Some(payload);
        self.notify.notify_one();
    }

    /// Takes a pending pong, if any.
    pub(crate) fn take_pong(&self) -> Option<Bytes> {
        self.lock().pong.take()
    }

    /// Takes everything queued now, without waiting. `Done` once finished and empty.
    pub(crate) fn try_batch(&self) -> Option<Batch> {
        let mut state = self.lock();
        if state.is_empty() {
            return state.completed.then_some(Batch::Done);
        }
        let bytes = std::mem::take(&mut state.bytes);
        let payload = if state.chunks.is_empty() {
            let payload = state.tail.split().freeze();
            if state.tail.capacity() > RETAINED_CAPACITY {
                state.tail = BytesMut::new();
            }
            drop(state);
            payload
        } else {
            state.seal_tail();
            let chunks = std::mem::take(&mut state.chunks);
            // Concatenated outside the lock.
            drop(state);
            concat(chunks, bytes)
        };
        self.space.notify_waiters();
        Some(Batch::Data(payload))
    }

    /// Waits for the next batch. With `idle`, returns [`Batch::Idle`] once that clock's period passed
    /// without data.
    pub(crate) async fn next_batch(&self, mut idle: Option<&mut IdleClock>) -> Batch {
        loop {
            if let Some(batch) = self.try_batch() {
                if let Some(idle) = idle.as_deref_mut() {
                    idle.touch();
                }
                return batch;
            }
            if self.lock().pong.is_some() {
                return Batch::Data(Bytes::new());
            }
            match idle.as_deref_mut() {
                Some(idle) => {
                    tokio::select! {
                        () = self.notify.notified() => {}
                        () = idle.expired() => {
                            idle.touch();
                            return Batch::Idle;
                        }
                    }
                }
                None => self.notify.notified().await,
            }
        }
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

/// A writer's keep-alive clock. It holds one timer for the writer's life and pushes it back only when
/// it fires early, so a busy connection does no timer work per batch (a timeout per wait would
/// register and cancel a timer for every message).
pub(crate) struct IdleClock {
    period: Duration,
    last: Instant,
    timer: Pin<Box<Sleep>>,
}

impl IdleClock {
    pub(crate) fn new(period: Duration) -> Self {
        let now = Instant::now();
        Self {
            period,
            last: now,
            timer: Box::pin(tokio::time::sleep_until(now + period)),
        }
    }

    /// Something was written now.
    fn touch(&mut self) {
        self.last = Instant::now();
    }

    /// Completes once a whole period passed since the last write.
    async fn expired(&mut self) {
        loop {
            self.timer.as_mut().await;
            let due = self.last + self.period;
            if Instant::now() >= due {
                return;
            }
            self.timer.as_mut().reset(due);
        }
    }
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
        let Some(Batch::Data(payload)) = q.try_batch() else {
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
        let Some(Batch::Data(payload)) = q.try_batch() else {
            panic!()
        };
        assert_eq!(payload.len(), 3);
        assert!(matches!(q.try_batch(), Some(Batch::Done)));
    }

    fn batch(q: &Outbound) -> Bytes {
        match q.try_batch() {
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
        assert!(q.try_batch().is_none());
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

    #[tokio::test(start_paused = true)]
    async fn idle_batches_come_a_period_after_the_last_data() {
        let q = Outbound::new(100);
        let period = Duration::from_secs(15);
        let mut idle = IdleClock::new(period);
        let started = Instant::now();
        assert!(matches!(q.next_batch(Some(&mut idle)).await, Batch::Idle));
        assert_eq!(started.elapsed(), period);
        // Data 10 s into the next period pushes the following Idle to 15 s after it.
        tokio::time::sleep(Duration::from_secs(10)).await;
        q.push(b(5)).unwrap();
        assert!(matches!(
            q.next_batch(Some(&mut idle)).await,
            Batch::Data(_)
        ));
        let written = Instant::now();
        assert!(matches!(q.next_batch(Some(&mut idle)).await, Batch::Idle));
        assert_eq!(written.elapsed(), period);
    }
}
