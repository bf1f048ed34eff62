//! Channel names and payloads: everything hubcast nodes say to each other through Redis is defined here
//! (and documented in `docs/backplane.md`).
//!
//! Channels, for prefix `P` (default `hubcast`) and hub `H`:
//! - `P:H:all`: sends to every connection, and sends to several groups or users at once;
//! - `P:H:group:G`: sends to group `G`, subscribed by nodes holding a member;
//! - `P:H:user:U`: sends to user `U`, subscribed by nodes holding one of their connections;
//! - `P:node:T`: everything addressed to the node with tag `T` (sends to its connections, group
//!   commands, client-result invocations, and the answers to its own commands);
//! - `P:control`: commands for every node (closing connections, a user's group changes).
//!
//! Payloads are MessagePack arrays. A broadcast (all, group and user channels) starts like ASP.NET Core's
//! `RedisInvocation`: `[excluded ids, {protocol name: framed bytes}, origin node tag, targets?]`, where
//! the per-protocol bytes are exactly what goes on the wire to a client (JSON with its 0x1E, or
//! MessagePack with its length prefix), so a receiving node copies them unchanged.

use std::sync::Arc;

use bytes::Bytes;
use hubcast_backplane::{
    ConnectionId, GroupAction, GroupName, Outcome, RemoteError, SerializedMessage, Target, UserId,
};
use hubcast_protocol::{Protocol, RawValue};

/// Channel names of one prefix.
#[derive(Debug, Clone)]
pub(crate) struct Channels {
    prefix: String,
}

/// What a channel carries, read from its name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Channel<'a> {
    /// A hub's broadcast channel.
    All(&'a str),
    /// A group of a hub.
    Group(&'a str, &'a str),
    /// A user of a hub.
    User(&'a str, &'a str),
    /// A node's own channel.
    Node,
    /// The channel every node listens to for commands.
    Control,
}

impl Channels {
    pub(crate) fn new(prefix: &str) -> Self {
        Self {
            prefix: prefix.to_owned(),
        }
    }

    pub(crate) fn prefix(&self) -> &str {
        &self.prefix
    }

    pub(crate) fn all(&self, hub: &str) -> String {
        format!("{}:{hub}:all", self.prefix)
    }

    pub(crate) fn group(&self, hub: &str, group: &str) -> String {
        format!("{}:{hub}:group:{group}", self.prefix)
    }

    pub(crate) fn user(&self, hub: &str, user: &str) -> String {
        format!("{}:{hub}:user:{user}", self.prefix)
    }

    pub(crate) fn node(&self, tag: &str) -> String {
        format!("{}:node:{tag}", self.prefix)
    }

    pub(crate) fn control(&self) -> String {
        format!("{}:control", self.prefix)
    }

    /// Where a send to `target` goes (connections aside: they go to their nodes), and whether its payload
    /// must name the targets: one group or user has its own channel; all, and several groups or users at
    /// once, go on the all channel. `None`: nobody to send to.
    pub(crate) fn broadcast(&self, hub: &str, target: &Target) -> Option<(String, bool)> {
        let one_or_many = |names: Vec<&str>, own: fn(&Self, &str, &str) -> String| match names[..] {
            [] => None,
            [name] => Some((own(self, hub, name), false)),
            _ => Some((self.all(hub), true)),
        };
        match target {
            Target::All => Some((self.all(hub), false)),
            Target::Groups(groups) => {
                one_or_many(groups.iter().map(GroupName::as_str).collect(), Self::group)
            }
            Target::Users(users) => {
                one_or_many(users.iter().map(UserId::as_str).collect(), Self::user)
            }
            Target::Connections(_) => None,
        }
    }

    /// Reads a channel name (hub names hold no `:`).
    pub(crate) fn parse<'a>(&self, channel: &'a str) -> Option<Channel<'a>> {
        let rest = channel
            .strip_prefix(self.prefix.as_str())?
            .strip_prefix(':')?;
        if rest.starts_with("node:") {
            return Some(Channel::Node);
        }
        if rest == "control" {
            return Some(Channel::Control);
        }
        let (hub, rest) = rest.split_once(':')?;
        if rest == "all" {
            return Some(Channel::All(hub));
        }
        let (kind, name) = rest.split_once(':')?;
        match kind {
            "group" => Some(Channel::Group(hub, name)),
            "user" => Some(Channel::User(hub, name)),
            _ => None,
        }
    }
}

/// A payload could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed backplane payload: {0}")]
pub(crate) struct WireError(String);

fn malformed(what: impl std::fmt::Display) -> WireError {
    WireError(what.to_string())
}

/// A send to all, a group or a user, as it crosses the backplane.
#[derive(Debug, Clone)]
pub(crate) struct Broadcast {
    pub(crate) excluded: Vec<ConnectionId>,
    pub(crate) message: Arc<SerializedMessage>,
    pub(crate) origin: String,
    /// Groups or users of a send to several at once (carried on the all channel).
    pub(crate) targets: Option<Target>,
}

/// What one node tells another on its node channel.
#[derive(Debug, Clone)]
pub(crate) enum NodeMessage {
    /// Deliver to these local connections.
    Send {
        hub: String,
        excluded: Vec<ConnectionId>,
        message: Arc<SerializedMessage>,
        connections: Vec<ConnectionId>,
    },
    /// Add a local connection to a group or remove it; answer with `Ack`.
    Group {
        hub: String,
        origin: String,
        id: u64,
        connection: ConnectionId,
        group: GroupName,
        action: GroupAction,
    },
    /// The answer to `Group`.
    Ack {
        id: u64,
        result: Result<(), RemoteError>,
    },
    /// Invoke a local connection for a client result; answer with `Result`.
    Invoke {
        hub: String,
        origin: String,
        id: u64,
        connection: ConnectionId,
        invocation_id: String,
        message: Arc<SerializedMessage>,
        timeout_ms: u64,
    },
    /// The answer to `Invoke`.
    Result {
        id: u64,
        result: Result<Outcome, RemoteError>,
    },
    /// Add a user's local connections to a group or remove them (from all their groups with `None`),
    /// on the control channel.
    UserGroups {
        hub: String,
        origin: String,
        user: UserId,
        group: Option<GroupName>,
        action: GroupAction,
    },
    /// Close the local connections `target` names (on the control channel).
    Close {
        hub: String,
        origin: String,
        target: Target,
        reason: String,
    },
}

const SEND: u8 = 1;
const GROUP: u8 = 2;
const ACK: u8 = 3;
const INVOKE: u8 = 4;
const RESULT: u8 = 5;
const CLOSE: u8 = 6;
const USER_GROUPS: u8 = 7;

const TARGET_ALL: u8 = 0;
const TARGET_CONNECTIONS: u8 = 3;

const TARGET_GROUPS: u8 = 1;
const TARGET_USERS: u8 = 2;

const ERR_UNKNOWN: u8 = 1;
const ERR_TOO_MANY_GROUPS: u8 = 2;
const ERR_DISCONNECTED: u8 = 3;
const ERR_TIMEOUT: u8 = 4;
const ERR_BACKPLANE: u8 = 5;

const OUTCOME_RESULT: u8 = 0;
const OUTCOME_VOID: u8 = 1;
const OUTCOME_ERROR: u8 = 2;
const OUTCOME_FAILED: u8 = 3;

// Writing into a Vec<u8> cannot fail: rmp's write errors come only from the writer.
fn put_str(out: &mut Vec<u8>, value: &str) {
    let _ = rmp::encode::write_str(out, value);
}

fn put_bin(out: &mut Vec<u8>, value: &[u8]) {
    let _ = rmp::encode::write_bin(out, value);
}

fn put_uint(out: &mut Vec<u8>, value: u64) {
    let _ = rmp::encode::write_uint(out, value);
}

fn put_array(out: &mut Vec<u8>, len: usize) {
    let _ = rmp::encode::write_array_len(out, len as u32);
}

fn put_strs<'a>(out: &mut Vec<u8>, values: impl ExactSizeIterator<Item = &'a str>) {
    put_array(out, values.len());
    values.for_each(|v| put_str(out, v));
}

/// `{protocol name: framed bytes}` for every protocol the message was encoded for.
fn put_messages(out: &mut Vec<u8>, message: &SerializedMessage) {
    let encoded: Vec<(Protocol, &Bytes)> = [Protocol::Json, Protocol::MessagePack]
        .into_iter()
        .filter_map(|p| message.get(p).ok().map(|bytes| (p, bytes)))
        .collect();
    let _ = rmp::encode::write_map_len(out, encoded.len() as u32);
    for (protocol, bytes) in encoded {
        put_str(out, protocol.name());
        put_bin(out, bytes);
    }
}

fn put_error(out: &mut Vec<u8>, error: &RemoteError) {
    let (code, text) = match error {
        RemoteError::UnknownConnection(id) => (ERR_UNKNOWN, id.as_str().to_owned()),
        RemoteError::TooManyGroups => (ERR_TOO_MANY_GROUPS, String::new()),
        RemoteError::Disconnected(id) => (ERR_DISCONNECTED, id.as_str().to_owned()),
        RemoteError::Timeout => (ERR_TIMEOUT, String::new()),
        RemoteError::Backplane(error) => (ERR_BACKPLANE, error.to_string()),
    };
    put_uint(out, u64::from(code));
    put_str(out, &text);
}

/// Encodes a broadcast.
pub(crate) fn encode_broadcast(
    excluded: &[ConnectionId],
    message: &SerializedMessage,
    origin: &str,
    targets: Option<&Target>,
) -> Vec<u8> {
    let mut out = Vec::with_capacity(64);
    let with_targets = matches!(targets, Some(Target::Groups(_) | Target::Users(_)));
    let targets = targets.filter(|_| with_targets);
    put_array(&mut out, if with_targets { 4 } else { 3 });
    put_strs(&mut out, excluded.iter().map(ConnectionId::as_str));
    put_messages(&mut out, message);
    put_str(&mut out, origin);
    if let Some(targets) = targets {
        put_target(&mut out, targets);
    }
    out
}

/// `[kind, names]`.
fn put_target(out: &mut Vec<u8>, target: &Target) {
    put_array(out, 2);
    match target {
        Target::All => {
            put_uint(out, u64::from(TARGET_ALL));
            put_array(out, 0);
        }
        Target::Groups(groups) => {
            put_uint(out, u64::from(TARGET_GROUPS));
            put_strs(out, groups.iter().map(GroupName::as_str));
        }
        Target::Users(users) => {
            put_uint(out, u64::from(TARGET_USERS));
            put_strs(out, users.iter().map(UserId::as_str));
        }
        Target::Connections(ids) => {
            put_uint(out, u64::from(TARGET_CONNECTIONS));
            put_strs(out, ids.iter().map(ConnectionId::as_str));
        }
    }
}

/// Encodes a node message.
pub(crate) fn encode_node(message: &NodeMessage) -> Vec<u8> {
    let mut out = Vec::with_capacity(64);
    match message {
        NodeMessage::Send {
            hub,
            excluded,
            message,
            connections,
        } => {
            put_array(&mut out, 5);
            put_uint(&mut out, u64::from(SEND));
            put_str(&mut out, hub);
            put_strs(&mut out, excluded.iter().map(ConnectionId::as_str));
            put_messages(&mut out, message);
            put_strs(&mut out, connections.iter().map(ConnectionId::as_str));
        }
        NodeMessage::Group {
            hub,
            origin,
            id,
            connection,
            group,
            action,
        } => {
            put_array(&mut out, 7);
            put_uint(&mut out, u64::from(GROUP));
            put_str(&mut out, hub);
            put_str(&mut out, origin);
            put_uint(&mut out, *id);
            put_str(&mut out, connection.as_str());
            put_str(&mut out, group.as_str());
            put_uint(&mut out, u64::from(*action == GroupAction::Add));
        }
        NodeMessage::Ack { id, result } => {
            put_array(&mut out, 4);
            put_uint(&mut out, u64::from(ACK));
            put_uint(&mut out, *id);
            match result {
                Ok(()) => {
                    put_uint(&mut out, 0);
                    put_str(&mut out, "");
                }
                Err(error) => put_error(&mut out, error),
            }
        }
        NodeMessage::Invoke {
            hub,
            origin,
            id,
            connection,
            invocation_id,
            message,
            timeout_ms,
        } => {
            put_array(&mut out, 8);
            put_uint(&mut out, u64::from(INVOKE));
            put_str(&mut out, hub);
            put_str(&mut out, origin);
            put_uint(&mut out, *id);
            put_str(&mut out, connection.as_str());
            put_str(&mut out, invocation_id);
            put_messages(&mut out, message);
            put_uint(&mut out, *timeout_ms);
        }
        NodeMessage::Result { id, result } => {
            put_array(&mut out, 5);
            put_uint(&mut out, u64::from(RESULT));
            put_uint(&mut out, *id);
            match result {
                Ok(Outcome::Result(raw)) => {
                    put_uint(&mut out, u64::from(OUTCOME_RESULT));
                    put_str(&mut out, raw.protocol().name());
                    put_bin(&mut out, raw.as_bytes());
                }
                Ok(Outcome::Void) => {
                    put_uint(&mut out, u64::from(OUTCOME_VOID));
                    put_str(&mut out, "");
                    put_str(&mut out, "");
                }
                Ok(Outcome::Error(text)) => {
                    put_uint(&mut out, u64::from(OUTCOME_ERROR));
                    put_str(&mut out, "");
                    put_str(&mut out, text);
                }
                Err(error) => {
                    put_uint(&mut out, u64::from(OUTCOME_FAILED));
                    put_error(&mut out, error);
                }
            }
        }
        NodeMessage::UserGroups {
            hub,
            origin,
            user,
            group,
            action,
        } => {
            put_array(&mut out, 6);
            put_uint(&mut out, u64::from(USER_GROUPS));
            put_str(&mut out, hub);
            put_str(&mut out, origin);
            put_str(&mut out, user.as_str());
            // Group names are never empty: "" stands for every group.
            put_str(&mut out, group.as_ref().map_or("", GroupName::as_str));
            put_uint(&mut out, u64::from(*action == GroupAction::Add));
        }
        NodeMessage::Close {
            hub,
            origin,
            target,
            reason,
        } => {
            put_array(&mut out, 5);
            put_uint(&mut out, u64::from(CLOSE));
            put_str(&mut out, hub);
            put_str(&mut out, origin);
            put_target(&mut out, target);
            put_str(&mut out, reason);
        }
    }
    out
}

/// Reads MessagePack from a shared buffer, handing out byte strings as slices of it (no copy).
struct Reader {
    buffer: Bytes,
    position: usize,
}

impl Reader {
    fn new(buffer: Bytes) -> Self {
        Self {
            buffer,
            position: 0,
        }
    }

    /// Runs an rmp read on the rest of the buffer and advances past what it consumed.
    fn read<T, E: std::fmt::Debug>(
        &mut self,
        what: &str,
        f: impl FnOnce(&mut &[u8]) -> Result<T, E>,
    ) -> Result<T, WireError> {
        let mut rest = self.buffer.get(self.position..).unwrap_or_default();
        let before = rest.len();
        let value = f(&mut rest).map_err(|e| malformed(format!("{what}: {e:?}")))?;
        self.position += before - rest.len();
        Ok(value)
    }

    fn array(&mut self) -> Result<usize, WireError> {
        self.read("array", |rd| rmp::decode::read_array_len(rd))
            .map(|n| n as usize)
    }

    fn uint(&mut self) -> Result<u64, WireError> {
        self.read("integer", |rd| rmp::decode::read_int::<u64, _>(rd))
    }

    fn take(&mut self, len: usize) -> Result<Bytes, WireError> {
        let end = self
            .position
            .checked_add(len)
            .filter(|end| *end <= self.buffer.len())
            .ok_or_else(|| malformed("truncated"))?;
        let bytes = self.buffer.slice(self.position..end);
        self.position = end;
        Ok(bytes)
    }

    fn bin(&mut self) -> Result<Bytes, WireError> {
        let len = self.read("bin", |rd| rmp::decode::read_bin_len(rd))?;
        self.take(len as usize)
    }

    fn string(&mut self) -> Result<String, WireError> {
        let len = self.read("string", |rd| rmp::decode::read_str_len(rd))?;
        let bytes = self.take(len as usize)?;
        String::from_utf8(bytes.to_vec()).map_err(|_| malformed("string is not UTF-8"))
    }

    fn strings(&mut self) -> Result<Vec<String>, WireError> {
        let len = self.array()?;
        // Each element takes at least one byte: a bogus length cannot make us allocate much.
        let mut values = Vec::with_capacity(len.min(self.buffer.len()));
        for _ in 0..len {
            values.push(self.string()?);
        }
        Ok(values)
    }

    fn ids<T: From<String>>(&mut self) -> Result<Vec<T>, WireError> {
        Ok(self.strings()?.into_iter().map(T::from).collect())
    }

    fn messages(&mut self) -> Result<Arc<SerializedMessage>, WireError> {
        let len = self.read("map", |rd| rmp::decode::read_map_len(rd))?;
        let (mut json, mut msgpack) = (None, None);
        for _ in 0..len {
            let name = self.string()?;
            let bytes = self.bin()?;
            match Protocol::from_name(&name) {
                Some(Protocol::Json) => json = Some(bytes),
                Some(Protocol::MessagePack) => msgpack = Some(bytes),
                None => {}
            }
        }
        Ok(Arc::new(SerializedMessage::from_encoded(json, msgpack)))
    }

    fn target(&mut self) -> Result<Target, WireError> {
        if self.array()? < 2 {
            return Err(malformed("targets are [kind, names]"));
        }
        let kind = self.uint()?;
        Ok(match u8::try_from(kind).unwrap_or(u8::MAX) {
            TARGET_ALL => {
                self.strings()?;
                Target::All
            }
            TARGET_GROUPS => Target::Groups(self.ids()?),
            TARGET_USERS => Target::Users(self.ids()?),
            TARGET_CONNECTIONS => Target::Connections(self.ids()?),
            _ => return Err(malformed("unknown target kind")),
        })
    }

    fn error(&mut self) -> Result<RemoteError, WireError> {
        let code = self.uint()?;
        self.error_of(code)
    }

    fn error_of(&mut self, code: u64) -> Result<RemoteError, WireError> {
        let text = self.string()?;
        Ok(match u8::try_from(code).unwrap_or(u8::MAX) {
            ERR_UNKNOWN => RemoteError::UnknownConnection(text.into()),
            ERR_TOO_MANY_GROUPS => RemoteError::TooManyGroups,
            ERR_DISCONNECTED => RemoteError::Disconnected(text.into()),
            ERR_TIMEOUT => RemoteError::Timeout,
            _ => RemoteError::Backplane(hubcast_backplane::BackplaneError::Unavailable(text)),
        })
    }
}

/// Decodes a broadcast; `targets` stays `None` unless the payload names several groups or users.
pub(crate) fn decode_broadcast(payload: Bytes) -> Result<Broadcast, WireError> {
    let mut reader = Reader::new(payload);
    let len = reader.array()?;
    if len < 3 {
        return Err(malformed("a broadcast has at least 3 elements"));
    }
    let excluded = reader.ids()?;
    let message = reader.messages()?;
    let origin = reader.string()?;
    let targets = match len {
        4.. => match reader.target()? {
            target @ (Target::Groups(_) | Target::Users(_)) => Some(target),
            _ => return Err(malformed("a broadcast targets groups or users")),
        },
        _ => None,
    };
    Ok(Broadcast {
        excluded,
        message,
        origin,
        targets,
    })
}

/// Decodes a node message.
pub(crate) fn decode_node(payload: Bytes) -> Result<NodeMessage, WireError> {
    let mut reader = Reader::new(payload);
    let len = reader.array()?;
    let kind = reader.uint()?;
    let need = |n: usize| {
        if len >= n {
            Ok(())
        } else {
            Err(malformed(format!("kind {kind} needs {n} elements")))
        }
    };
    match u8::try_from(kind).unwrap_or(u8::MAX) {
        SEND => {
            need(5)?;
            Ok(NodeMessage::Send {
                hub: reader.string()?,
                excluded: reader.ids()?,
                message: reader.messages()?,
                connections: reader.ids()?,
            })
        }
        GROUP => {
            need(7)?;
            Ok(NodeMessage::Group {
                hub: reader.string()?,
                origin: reader.string()?,
                id: reader.uint()?,
                connection: reader.string()?.into(),
                group: reader.string()?.into(),
                action: if reader.uint()? == 1 {
                    GroupAction::Add
                } else {
                    GroupAction::Remove
                },
            })
        }
        ACK => {
            need(4)?;
            let id = reader.uint()?;
            let result = match reader.uint()? {
                0 => reader.string().map(|_| Ok(()))?,
                code => Err(reader.error_of(code)?),
            };
            Ok(NodeMessage::Ack { id, result })
        }
        INVOKE => {
            need(8)?;
            Ok(NodeMessage::Invoke {
                hub: reader.string()?,
                origin: reader.string()?,
                id: reader.uint()?,
                connection: reader.string()?.into(),
                invocation_id: reader.string()?,
                message: reader.messages()?,
                timeout_ms: reader.uint()?,
            })
        }
        RESULT => {
            need(5)?;
            let id = reader.uint()?;
            let kind = reader.uint()?;
            let result = match u8::try_from(kind).unwrap_or(u8::MAX) {
                OUTCOME_RESULT => {
                    let protocol = Protocol::from_name(&reader.string()?)
                        .ok_or_else(|| malformed("unknown protocol"))?;
                    Ok(Outcome::Result(RawValue::new(protocol, reader.bin()?)))
                }
                OUTCOME_VOID => Ok(Outcome::Void),
                OUTCOME_ERROR => {
                    let _ = reader.string()?;
                    Ok(Outcome::Error(reader.string()?))
                }
                OUTCOME_FAILED => Err(reader.error()?),
                _ => return Err(malformed("unknown outcome kind")),
            };
            Ok(NodeMessage::Result { id, result })
        }
        USER_GROUPS => {
            need(6)?;
            Ok(NodeMessage::UserGroups {
                hub: reader.string()?,
                origin: reader.string()?,
                user: reader.string()?.into(),
                group: Some(reader.string()?)
                    .filter(|g| !g.is_empty())
                    .map(GroupName::from),
                action: if reader.uint()? == 1 {
                    GroupAction::Add
                } else {
                    GroupAction::Remove
                },
            })
        }
        CLOSE => {
            need(5)?;
            Ok(NodeMessage::Close {
                hub: reader.string()?,
                origin: reader.string()?,
                target: reader.target()?,
                reason: reader.string()?,
            })
        }
        _ => Err(malformed(format!("unknown node message kind {kind}"))),
    }
}

#[cfg(test)]
mod tests;
