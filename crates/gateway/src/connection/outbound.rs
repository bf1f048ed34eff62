//! The per-connection outbound queue: everything the server sends to one client waits here until that
//! client's transport writes it.
//!
//! The queue is bounded in bytes (`transport_max_buffer_size`). A push that would exceed the bound fails
//! instead of waiting, so a broadcast never stalls on one slow client and memory never grows without
//! bound; the caller then closes that client as a slow consumer. Writers take everything queued at once
//! ([`Outbound::next_batch`]) and write it with as few syscalls as the transport allows, since SignalR
//! allows several hub messages per WebSocket frame, SSE event or poll response.

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::Mutex;
use std::time::Duration;

use bytes::Bytes;
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

/// What a writer gets from [`Outbound::next_batch`].
#[derive(Debug)]
pub(crate) enum Batch {
    /// Messages to write, in order.
    Data(VecDeque<Bytes>),
    /// Nothing was queued for the whole idle period: time for a keep-alive ping.
    Idle,
    /// The connection is finished and everything queued has been handed out.
    Done,
}

#[derive(Debug, Default)]
struct State {
    items: VecDeque<Bytes>,
    bytes: usize,
    /// A WebSocket pong owed to the client (written before data).
    pong: Option<Bytes>,
    completed: bool,
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
            state.bytes += bytes.len();
            state.items.push_back(bytes);
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
                state.items.clear();
                state.bytes = 0;
            }
            if let Some(last) = last {
                state.bytes += last.len();
                state.items.push_back(last);
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
            state.items = items.into();
            state.bytes = state.items.iter().map(Bytes::len).sum();
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
        if !state.items.is_empty() {
            let bytes = std::mem::take(&mut state.bytes);
            crate::metrics::metrics().bytes_out.inc_by(bytes as u64);
            let items = std::mem::take(&mut state.items);
            drop(state);
            self.space.notify_waiters();
            return Some(Batch::Data(items));
        }
        state.completed.then_some(Batch::Done)
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
                return Batch::Data(VecDeque::new());
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
        let Some(Batch::Data(items)) = q.try_batch() else {
            panic!()
        };
        assert_eq!(items.len(), 1);
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
        let Some(Batch::Data(items)) = q.try_batch() else {
            panic!()
        };
        assert_eq!(items.iter().map(Bytes::len).collect::<Vec<_>>(), vec![3]);
        assert!(matches!(q.try_batch(), Some(Batch::Done)));
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
