//! Shared presence in Redis: per hub, the online users with their connection counts, each user's
//! connections, each group's members; per node, its connections (so that another node can clean up after
//! it) and a heartbeat with a TTL.
//!
//! Keys (all under the hash tag `{P}`, so one Lua script can touch them atomically, also on a Cluster):
//! - `{P}:nodes`: sorted set of node tags, scored by heartbeat expiry (ms, Redis clock);
//! - `{P}:addr`: hash node tag → the address it advertises for relayed requests (set by its heartbeat,
//!   removed with it);
//! - `{P}:node:T`: hash `hub\nconnection` → user of node `T`'s connections;
//! - `{P}:online:H`: hash user → number of connections;
//! - `{P}:user:H:U`: hash connection → node tag of user `U`'s connections;
//! - `{P}:group:H:G`: hash connection → user of group `G`'s members;
//! - `{P}:cg:H:C`: set of the groups of connection `C`.
//!
//! Every change is idempotent and applied in order by one worker, which pipelines what has queued up.
//! While Redis is unreachable changes are not lost but absorbed: the node republishes its whole presence
//! (a snapshot of its local indexes) once Redis is back, and also whenever its heartbeat finds that its
//! entries are gone (Redis restarted empty, or other nodes swept it after a long outage). Each heartbeat
//! also sweeps nodes whose heartbeat expired, so a dead node's users leave within its TTL plus one beat.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use hubcast_backplane::{
    BackplaneError, ConnectionId, GroupName, LocalConnection, LocalHub, Member, PresenceChange,
    UserId,
};
use redis::Pipeline;
use tokio::sync::{mpsc, oneshot};

use crate::commands::Commands;

/// The Lua library every presence operation runs (`EVAL script 1 {P}:nodes P op args…`).
const SCRIPT: &str = r#"
local P, op = ARGV[1], ARGV[2]
local function k(...) return P .. ':' .. table.concat({...}, ':') end
local function disconnect(tag, hub, conn, user)
  local cg = k('cg', hub, conn)
  for _, g in ipairs(redis.call('SMEMBERS', cg)) do redis.call('HDEL', k('group', hub, g), conn) end
  redis.call('DEL', cg)
  redis.call('HDEL', k('node', tag), hub .. '\n' .. conn)
  if user ~= '' and redis.call('HDEL', k('user', hub, user), conn) == 1 then
    if redis.call('HINCRBY', k('online', hub), user, -1) <= 0 then redis.call('HDEL', k('online', hub), user) end
  end
end
local function clean(tag)
  local entries = redis.call('HGETALL', k('node', tag))
  for i = 1, #entries, 2 do
    local field = entries[i]
    local cut = string.find(field, '\n', 1, true)
    if cut then disconnect(tag, string.sub(field, 1, cut - 1), string.sub(field, cut + 1), entries[i + 1]) end
  end
  redis.call('DEL', k('node', tag))
end
if op == 'connect' then
  local tag, hub, conn, user = ARGV[3], ARGV[4], ARGV[5], ARGV[6]
  redis.call('HSET', k('node', tag), hub .. '\n' .. conn, user)
  if user ~= '' and redis.call('HSET', k('user', hub, user), conn, tag) == 1 then
    redis.call('HINCRBY', k('online', hub), user, 1)
  end
  return 1
elseif op == 'disconnect' then
  disconnect(ARGV[3], ARGV[4], ARGV[5], ARGV[6])
  return 1
elseif op == 'join' then
  local hub, conn, user, group = ARGV[3], ARGV[4], ARGV[5], ARGV[6]
  redis.call('SADD', k('cg', hub, conn), group)
  redis.call('HSET', k('group', hub, group), conn, user)
  return 1
elseif op == 'leave' then
  local hub, conn, group = ARGV[3], ARGV[4], ARGV[5]
  redis.call('SREM', k('cg', hub, conn), group)
  redis.call('HDEL', k('group', hub, group), conn)
  return 1
elseif op == 'clean' then
  clean(ARGV[3])
  return 1
elseif op == 'retire' then
  clean(ARGV[3])
  redis.call('ZREM', KEYS[1], ARGV[3])
  redis.call('HDEL', k('addr'), ARGV[3])
  return 1
elseif op == 'heartbeat' then
  local tag, ttl = ARGV[3], tonumber(ARGV[4])
  local t = redis.call('TIME')
  local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  local dead = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now)
  for _, d in ipairs(dead) do
    if d ~= tag then clean(d) end
    redis.call('ZREM', KEYS[1], d)
    redis.call('HDEL', k('addr'), d)
  end
  local added = redis.call('ZADD', KEYS[1], now + ttl, tag)
  if ARGV[5] ~= '' then redis.call('HSET', k('addr'), tag, ARGV[5]) end
  local swept = #dead
  if added == 1 then swept = -1 - swept end
  return swept
end
return redis.error_reply('unknown presence operation ' .. tostring(op))
"#;

/// The hubs attached on this node, shared with the presence worker for snapshots.
pub(crate) type Hubs = Arc<RwLock<HashMap<Arc<str>, Arc<dyn LocalHub>>>>;

/// Keys of one prefix, for one node.
#[derive(Clone)]
struct Keys {
    /// `{prefix}`: the hash tag every presence key starts with.
    tagged: String,
    nodes: String,
    node: String,
}

impl Keys {
    /// Starts an `EVAL` of the library's `op` (the caller adds its arguments).
    fn eval(&self, pipeline: &mut Pipeline, op: &str) {
        pipeline
            .cmd("EVAL")
            .arg(SCRIPT)
            .arg(1)
            .arg(&self.nodes)
            .arg(&self.tagged)
            .arg(op);
    }
}

enum Op {
    Change(Arc<str>, PresenceChange, oneshot::Sender<()>),
    Resync,
}

/// The presence side of the Redis backplane.
pub(crate) struct RedisPresence {
    keys: Keys,
    commands: Commands,
    ops: mpsc::UnboundedSender<Op>,
    ttl: Duration,
    /// The address this node advertises for relayed requests (empty: none).
    address: String,
    hubs: Hubs,
    /// Online users per hub, read at each heartbeat.
    sizes: std::sync::Mutex<Vec<(String, u64)>>,
}

/// At most this many changes go in one pipeline.
const BATCH: usize = 256;

impl RedisPresence {
    /// Starts the worker and the heartbeat.
    pub(crate) fn start(
        prefix: &str,
        node: &str,
        commands: Commands,
        hubs: Hubs,
        ttl: Duration,
        address: Option<&str>,
    ) -> Arc<Self> {
        let tagged = format!("{{{prefix}}}");
        let keys = Keys {
            nodes: format!("{tagged}:nodes"),
            tagged,
            node: node.to_owned(),
        };
        let (ops, receiver) = mpsc::unbounded_channel();
        let presence = Arc::new(Self {
            keys: keys.clone(),
            commands: commands.clone(),
            ops,
            ttl,
            address: address.unwrap_or_default().to_owned(),
            hubs: hubs.clone(),
            sizes: std::sync::Mutex::new(Vec::new()),
        });
        let worker = Worker {
            keys,
            commands,
            hubs,
            dirty: AtomicBool::new(true),
        };
        tokio::spawn(worker.run(receiver));
        tokio::spawn(heartbeat(Arc::downgrade(&presence)));
        presence
    }

    /// Records a change; returns once it is in Redis, or absorbed into the next republish.
    pub(crate) async fn change(&self, hub: Arc<str>, change: PresenceChange) {
        let (done, applied) = oneshot::channel();
        if self.ops.send(Op::Change(hub, change, done)).is_ok() {
            let _ = applied.await;
        }
    }

    /// Republishes this node's presence (after a reconnect).
    pub(crate) fn resync(&self) {
        let _ = self.ops.send(Op::Resync);
    }

    /// Removes this node's entries (on shutdown).
    pub(crate) async fn leave(&self) -> Result<(), BackplaneError> {
        let mut pipeline = redis::pipe();
        self.keys.eval(&mut pipeline, "retire");
        pipeline.arg(&self.keys.node).ignore();
        self.commands.query(&pipeline).await
    }

    /// Online users of a hub with their connection counts, sorted.
    pub(crate) async fn online_users(
        &self,
        hub: &str,
    ) -> Result<Vec<(UserId, u64)>, BackplaneError> {
        let key = format!("{}:online:{hub}", self.keys.tagged);
        let mut pipeline = redis::pipe();
        pipeline.hgetall(key);
        let (users,): (Vec<(String, i64)>,) = self.commands.query(&pipeline).await?;
        let mut users: Vec<(UserId, u64)> = users
            .into_iter()
            .filter(|(_, count)| *count > 0)
            .map(|(user, count)| (UserId::from(user), count.unsigned_abs()))
            .collect();
        users.sort();
        Ok(users)
    }

    /// A user's connections on every node.
    pub(crate) async fn user_connections(
        &self,
        hub: &str,
        user: &UserId,
    ) -> Result<Vec<ConnectionId>, BackplaneError> {
        let key = format!("{}:user:{hub}:{user}", self.keys.tagged);
        let mut pipeline = redis::pipe();
        pipeline.hkeys(key);
        let (connections,): (Vec<String>,) = self.commands.query(&pipeline).await?;
        Ok(connections.into_iter().map(ConnectionId::from).collect())
    }

    /// The address live node `node` advertises, if any (nodes whose heartbeat expired are swept with
    /// their address by the next heartbeat of any node).
    pub(crate) async fn node_address(&self, node: &str) -> Result<Option<String>, BackplaneError> {
        let mut pipeline = redis::pipe();
        pipeline.hget(format!("{}:addr", self.keys.tagged), node);
        let (address,): (Option<String>,) = self.commands.query(&pipeline).await?;
        Ok(address)
    }

    /// Whether node `node` holds `connection` of `hub`.
    pub(crate) async fn connection_exists(
        &self,
        node: &str,
        hub: &str,
        connection: &ConnectionId,
    ) -> Result<bool, BackplaneError> {
        let key = format!("{}:node:{node}", self.keys.tagged);
        let mut pipeline = redis::pipe();
        pipeline.hexists(key, format!("{hub}\n{connection}"));
        let (exists,): (bool,) = self.commands.query(&pipeline).await?;
        Ok(exists)
    }

    /// A group's members on every node.
    pub(crate) async fn group_members(
        &self,
        hub: &str,
        group: &GroupName,
    ) -> Result<Vec<Member>, BackplaneError> {
        let key = format!("{}:group:{hub}:{group}", self.keys.tagged);
        let mut pipeline = redis::pipe();
        pipeline.hgetall(key);
        let (members,): (Vec<(String, String)>,) = self.commands.query(&pipeline).await?;
        Ok(members
            .into_iter()
            .map(|(connection, user)| Member {
                connection: connection.into(),
                user: Some(user).filter(|u| !u.is_empty()).map(UserId::from),
            })
            .collect())
    }

    /// Online users per hub as of the last heartbeat.
    pub(crate) fn sizes(&self) -> Vec<(String, u64)> {
        self.sizes.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Reads the number of online users of every attached hub.
    async fn measure(&self) -> Result<(), BackplaneError> {
        let hubs: Vec<String> = self
            .hubs
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .keys()
            .map(|hub| hub.to_string())
            .collect();
        if hubs.is_empty() {
            return Ok(());
        }
        let mut pipeline = redis::pipe();
        for hub in &hubs {
            pipeline.hlen(format!("{}:online:{hub}", self.keys.tagged));
        }
        let counts: Vec<u64> = self.commands.query(&pipeline).await?;
        *self.sizes.lock().unwrap_or_else(|p| p.into_inner()) =
            hubs.into_iter().zip(counts).collect();
        Ok(())
    }

    /// Beats once: refreshes this node's expiry and sweeps expired nodes. Returns whether this node's
    /// entries were missing (so it must republish them).
    async fn beat(&self) -> Result<bool, BackplaneError> {
        let mut pipeline = redis::pipe();
        self.keys.eval(&mut pipeline, "heartbeat");
        pipeline
            .arg(&self.keys.node)
            .arg(self.ttl.as_millis() as u64)
            .arg(&self.address);
        let (swept,): (i64,) = self.commands.query(&pipeline).await?;
        let (missing, swept) = if swept < 0 {
            (true, -1 - swept)
        } else {
            (false, swept)
        };
        if swept > 0 {
            tracing::info!(
                nodes = swept,
                "removed the presence of nodes whose heartbeat expired"
            );
        }
        Ok(missing)
    }
}

/// Beats every third of the TTL while the presence lives.
async fn heartbeat(presence: std::sync::Weak<RedisPresence>) {
    let Some(ttl) = presence.upgrade().map(|p| p.ttl) else {
        return;
    };
    let mut interval = tokio::time::interval(ttl / 3);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        interval.tick().await;
        let Some(presence) = presence.upgrade() else {
            return;
        };
        match presence.beat().await {
            Ok(true) => presence.resync(),
            Ok(false) => {
                if let Err(error) = presence.measure().await {
                    tracing::debug!(%error, "presence sizes could not be read");
                }
            }
            Err(error) => {
                tracing::debug!(%error, "presence heartbeat failed");
                presence.resync();
            }
        }
    }
}

struct Worker {
    keys: Keys,
    commands: Commands,
    hubs: Hubs,
    /// The node's presence in Redis may be stale: republish before the next change.
    dirty: AtomicBool,
}

impl Worker {
    async fn run(self, mut ops: mpsc::UnboundedReceiver<Op>) {
        while let Some(first) = ops.recv().await {
            let mut batch = vec![first];
            while batch.len() < BATCH {
                match ops.try_recv() {
                    Ok(op) => batch.push(op),
                    Err(_) => break,
                }
            }
            let mut changes = Vec::with_capacity(batch.len());
            let mut waiters = Vec::with_capacity(batch.len());
            for op in batch {
                match op {
                    Op::Change(hub, change, done) => {
                        changes.push((hub, change));
                        waiters.push(done);
                    }
                    Op::Resync => self.dirty.store(true, Ordering::Relaxed),
                }
            }
            if self.dirty.load(Ordering::Relaxed) {
                // The snapshot already holds the effect of every change taken so far.
                match self.republish().await {
                    Ok(()) => self.dirty.store(false, Ordering::Relaxed),
                    Err(error) => tracing::debug!(%error, "presence republish failed"),
                }
            } else if !changes.is_empty() {
                let mut pipeline = redis::pipe();
                for (hub, change) in &changes {
                    self.push_change(&mut pipeline, hub, change);
                }
                if let Err(error) = self.commands.query::<()>(&pipeline).await {
                    tracing::debug!(%error, "presence update failed: republishing when Redis is back");
                    self.dirty.store(true, Ordering::Relaxed);
                }
            }
            waiters.into_iter().for_each(|done| {
                let _ = done.send(());
            });
        }
    }

    fn push_change(&self, pipeline: &mut Pipeline, hub: &str, change: &PresenceChange) {
        let user = |member: &Member| {
            member
                .user
                .as_ref()
                .map(|u| u.as_str().to_owned())
                .unwrap_or_default()
        };
        match change {
            PresenceChange::Connected(member) | PresenceChange::Disconnected(member) => {
                let op = if matches!(change, PresenceChange::Connected(_)) {
                    "connect"
                } else {
                    "disconnect"
                };
                self.keys.eval(pipeline, op);
                pipeline
                    .arg(&self.keys.node)
                    .arg(hub)
                    .arg(member.connection.as_str())
                    .arg(user(member))
                    .ignore();
            }
            PresenceChange::Joined(member, group) => {
                self.keys.eval(pipeline, "join");
                pipeline
                    .arg(hub)
                    .arg(member.connection.as_str())
                    .arg(user(member))
                    .arg(group.as_str())
                    .ignore();
            }
            PresenceChange::Left(member, group) => {
                self.keys.eval(pipeline, "leave");
                pipeline
                    .arg(hub)
                    .arg(member.connection.as_str())
                    .arg(group.as_str())
                    .ignore();
            }
        }
    }

    /// Replaces this node's entries with a snapshot of its local indexes.
    async fn republish(&self) -> Result<(), BackplaneError> {
        let mut clean = redis::pipe();
        self.keys.eval(&mut clean, "clean");
        clean.arg(&self.keys.node).ignore();
        self.commands.query::<()>(&clean).await?;
        let hubs: Vec<(Arc<str>, Arc<dyn LocalHub>)> = self
            .hubs
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|(name, hub)| (name.clone(), hub.clone()))
            .collect();
        let mut count = 0usize;
        for (name, hub) in hubs {
            let snapshot: Vec<LocalConnection> = hub.snapshot();
            for chunk in snapshot.chunks(BATCH) {
                let mut pipeline = redis::pipe();
                for connection in chunk {
                    let member = connection.member.clone();
                    self.push_change(
                        &mut pipeline,
                        &name,
                        &PresenceChange::Connected(member.clone()),
                    );
                    for group in &connection.groups {
                        let joined = PresenceChange::Joined(member.clone(), group.clone());
                        self.push_change(&mut pipeline, &name, &joined);
                    }
                }
                self.commands.query::<()>(&pipeline).await?;
                count += chunk.len();
            }
        }
        tracing::info!(connections = count, "presence republished to Redis");
        Ok(())
    }
}
