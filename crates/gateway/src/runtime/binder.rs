//! The cursor a call's arguments are bound through: the raw arguments, the stream ids, and the upload
//! streams a successful binding opens for the receive loop to feed. [`Param`](crate::hub::Param)
//! implementations read from it.

use hubcast_protocol::RawValue;
use tokio::sync::mpsc;

use super::BindingError;

/// One item of an upload stream as the receive loop forwards it: a value, or the client's error.
pub(crate) type UploadItem = Result<RawValue, String>;

/// What binding reads from: the raw arguments, the stream ids, and where new upload streams go.
pub struct Binder<'a> {
    args: std::slice::Iter<'a, RawValue>,
    stream_ids: std::slice::Iter<'a, String>,
    in_use: &'a (dyn Fn(&str) -> bool + Sync),
    capacity: usize,
    opened: Vec<(String, mpsc::Sender<UploadItem>)>,
}

impl<'a> Binder<'a> {
    pub(crate) fn new(
        args: &'a [RawValue],
        stream_ids: &'a [String],
        in_use: &'a (dyn Fn(&str) -> bool + Sync),
        capacity: usize,
    ) -> Self {
        Self {
            args: args.iter(),
            stream_ids: stream_ids.iter(),
            in_use,
            capacity,
            opened: Vec::new(),
        }
    }

    /// Every argument not bound yet.
    pub(crate) fn take_all(&mut self) -> Vec<RawValue> {
        self.args.by_ref().cloned().collect()
    }

    pub(crate) fn remaining(&self) -> (usize, usize) {
        (self.args.len(), self.stream_ids.len())
    }

    /// The next argument, if any is left.
    pub(crate) fn next_argument(&mut self) -> Option<&'a RawValue> {
        self.args.next()
    }

    /// Opens the upload stream named by the next stream id: its items arrive on the receiver.
    pub(crate) fn open_stream(&mut self) -> Result<mpsc::Receiver<UploadItem>, BindingError> {
        let id = self.stream_ids.next().ok_or(BindingError::StreamCount {
            provided: 0,
            expected: 1,
        })?;
        if (self.in_use)(id) || self.opened.iter().any(|(open, _)| open == id) {
            return Err(BindingError::IdInUse(id.clone()));
        }
        let (sender, receiver) = mpsc::channel(self.capacity.max(1));
        self.opened.push((id.clone(), sender));
        Ok(receiver)
    }

    /// Arguments and stream ids not bound yet.
    /// The upload streams opened by a successful binding, for the receive loop to feed.
    pub(crate) fn into_opened(self) -> Vec<(String, mpsc::Sender<UploadItem>)> {
        self.opened
    }
}
