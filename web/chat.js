// The hubcast chat page: a session-cookie sign-in that survives reloads, a sidebar of conversations (rooms,
// direct messages and the broadcast "everyone") each with its own history, unread and mention badges,
// live messages with ids (ChatMessage) for read receipts and deletes, uploads, reconnects and keyboard use.
// Message text is always rendered as text (textContent), never as HTML.
'use strict';

const $ = (id) => document.getElementById(id);
const PAGE = 50; // messages per history page
// Upload slice: a multiple of 3 bytes (each base64 chunk decodes alone), within the hub's 32 KiB messages.
const CHUNK = 15 * 1024;
const MAX_UPLOAD = 10 * 1024 * 1024;
const GROUP_MS = 5 * 60 * 1000; // consecutive messages of one author within this are grouped
const ALL = '*'; // the broadcast conversation's key

let me = null;
let admin = false;
let devLogin = true;
let connection = null;
let current = null; // key of the conversation shown
const convs = new Map(); // key -> conversation, in sidebar order
const typers = new Map(); // user -> timer
const channel = 'BroadcastChannel' in window ? new BroadcastChannel('hubcast-chat') : null;

// ---------- helpers ----------

function el(tag, props = {}, ...children) {
  const node = Object.assign(document.createElement(tag), props);
  node.append(...children.filter((c) => c !== null && c !== undefined && c !== false));
  return node;
}
const hiddenText = (text) => el('span', { className: 'visually-hidden', textContent: text });
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
const visible = () => document.visibilityState === 'visible';

/** Compares by code point, like the server's byte-wise UTF-8 order. */
function codePointCompare(a, b) {
  const x = [...a].map((c) => c.codePointAt(0));
  const y = [...b].map((c) => c.codePointAt(0));
  for (let i = 0; i < Math.min(x.length, y.length); i++) if (x[i] !== y[i]) return x[i] - y[i];
  return x.length - y.length;
}
const escapeUser = (user) => user.replaceAll('%', '%25').replaceAll(':', '%3A');
const unescapeUser = (user) => user.replaceAll('%3A', ':').replaceAll('%25', '%');
/** The history key of the direct conversation of `a` and `b` (as the server names it). */
function dmKey(a, b) {
  const [first, second] = codePointCompare(a, b) <= 0 ? [a, b] : [b, a];
  return `dm:${escapeUser(first)}:${escapeUser(second)}`;
}
/** The other user of a direct conversation key. */
function dmPeer(key) {
  const [first, second] = key.slice(3).split(':').map(unescapeUser);
  return first === me ? second : first;
}

function formatSize(bytes) {
  if (bytes < 1024) return `${bytes} B`;
  if (bytes < 1024 * 1024) return `${(bytes / 1024).toFixed(1)} KiB`;
  return `${(bytes / 1024 / 1024).toFixed(1)} MiB`;
}
const dayKey = (date) => `${date.getFullYear()}-${date.getMonth()}-${date.getDate()}`;
function dayLabel(date) {
  const today = new Date();
  const yesterday = new Date(today.getFullYear(), today.getMonth(), today.getDate() - 1);
  if (dayKey(date) === dayKey(today)) return 'Today';
  if (dayKey(date) === dayKey(yesterday)) return 'Yesterday';
  return date.toLocaleDateString(undefined, { weekday: 'long', year: 'numeric', month: 'long', day: 'numeric' });
}
const shortTime = (date) => date.toLocaleTimeString(undefined, { hour: '2-digit', minute: '2-digit' });

function announce(text) {
  const region = $('announce');
  region.textContent = '';
  // A fresh text node each time, so repeated identical announcements are still read.
  setTimeout(() => { region.textContent = text; }, 50);
}

function setState(text) {
  $('state').textContent = text;
  $('state').className = `state ${text}`;
}

function banner(text) {
  $('banner').textContent = text ?? '';
  $('banner').hidden = !text;
}

// ---------- conversations ----------

function storageKey() { return `hubcast.conversations.${me}`; }

function save() {
  const rooms = [...convs.values()].filter((c) => c.kind === 'room').map((c) => c.name);
  const dms = [...convs.values()].filter((c) => c.kind === 'dm').map((c) => c.name);
  try {
    localStorage.setItem(storageKey(), JSON.stringify({ rooms, dms, current }));
  } catch { /* private mode: nothing remembered */ }
}

function remembered() {
  try {
    const saved = JSON.parse(localStorage.getItem(storageKey()) ?? 'null');
    if (saved && Array.isArray(saved.rooms)) return saved;
  } catch { /* ignore a damaged entry */ }
  return { rooms: ['lobby'], dms: [], current: 'lobby' };
}

function title(conv) {
  if (conv.kind === 'room') return `#${conv.name}`;
  if (conv.kind === 'dm') return `@${conv.name}`;
  return 'everyone';
}

function addConversation(kind, name) {
  const key = kind === 'room' ? name : kind === 'dm' ? dmKey(me, name) : ALL;
  if (convs.has(key)) return convs.get(key);
  const conv = {
    key, kind, name,
    items: [], // messages and notices, oldest first
    oldest: null, // id of the oldest stored message shown
    loaded: kind === 'all', // whether its history was read (the broadcast has none)
    exhausted: kind === 'all',
    unread: 0, mentions: 0,
    reads: new Map(), // user -> newest message id read
    marked: 0, // newest id we sent MarkRead for
    list: el('ol', { className: 'messages', tabIndex: 0, hidden: true }),
  };
  conv.list.setAttribute('aria-label', `Messages in ${title(conv)}`);
  conv.list.addEventListener('scroll', () => {
    if (conv.list.scrollTop === 0 && conv.loaded && !conv.exhausted && !conv.paging) loadOlder(conv).catch(report);
  });
  $('lists').append(conv.list);
  // Rooms and the broadcast first, then direct messages, each in the order added.
  convs.set(key, conv);
  return conv;
}

function removeConversation(conv) {
  conv.list.remove();
  convs.delete(conv.key);
}

function renderSidebar() {
  const item = (conv) => {
    const button = el('button', { type: 'button', className: 'conv' },
      el('span', { className: 'conv-name', textContent: title(conv) }),
      conv.mentions ? el('span', { className: 'badge mention', textContent: `@${conv.mentions}` }, hiddenText(conv.mentions === 1 ? ' mention' : ' mentions')) : null,
      conv.unread ? el('span', { className: 'badge', textContent: String(conv.unread) }, hiddenText(' unread')) : null);
    button.dataset.key = conv.key;
    if (conv.key === current) button.setAttribute('aria-current', 'page');
    button.addEventListener('click', () => show(conv.key).catch(report));
    return el('li', {}, button);
  };
  const all = [...convs.values()];
  $('rooms').replaceChildren(...[...all.filter((c) => c.kind === 'room'), ...all.filter((c) => c.kind === 'all')].map(item));
  $('dms').replaceChildren(...all.filter((c) => c.kind === 'dm').map(item));
  const unread = all.reduce((n, c) => n + c.unread, 0);
  const mentions = all.reduce((n, c) => n + c.mentions, 0);
  document.title = unread ? `(${unread}) hubcast chat` : 'hubcast chat';
  $('menu-badge').hidden = !unread && !mentions;
  $('menu-badge').textContent = mentions ? `@${mentions}` : String(unread);
}

async function show(key, { focus = false } = {}) {
  const conv = convs.get(key) ?? convs.get('lobby') ?? convs.values().next().value;
  if (!conv) return;
  current = conv.key;
  for (const c of convs.values()) c.list.hidden = c !== conv;
  $('current').textContent = title(conv);
  $('leave').hidden = conv.kind === 'all';
  $('leave').textContent = conv.kind === 'dm' ? 'Close' : 'Leave';
  $('leave').setAttribute('aria-label', conv.kind === 'dm' ? `Close the conversation with ${conv.name}` : `Leave ${title(conv)}`);
  $('text').placeholder = `Message ${title(conv)}`;
  $('chat').classList.remove('nav-open');
  $('menu').setAttribute('aria-expanded', 'false');
  conv.unread = 0;
  conv.mentions = 0;
  updateOlder(conv);
  renderSidebar();
  save();
  if (focus) $('text').focus();
  if (!conv.loaded) await loadFresh(conv);
  else {
    scrollToEnd(conv);
    markRead(conv);
  }
}

function updateOlder(conv) {
  if (!conv || conv.key !== current) return;
  $('older').hidden = conv.exhausted;
  $('older').disabled = !conv.loaded && conv.kind !== 'all';
}

function scrollToEnd(conv) { conv.list.scrollTop = conv.list.scrollHeight; }

/** Reads the newest page of a conversation's history, keeping live lines newer than it. */
async function loadFresh(conv) {
  if (!connection || connection.state !== signalR.HubConnectionState.Connected || conv.kind === 'all') return;
  const page = await connection.invoke('RecentMessages', conv.key, PAGE);
  const ids = new Set(page.map((m) => m.id));
  const newest = page.length ? page[page.length - 1].id : -Infinity;
  const first = page.length ? Date.parse(page[0].utc) : -Infinity;
  const live = conv.items.filter((m) => (m.id == null && Date.parse(m.utc) >= first) || (m.id != null && !ids.has(m.id) && m.id > newest));
  conv.items = [...page.map((m) => ({ ...m, kind: conv.kind === 'dm' ? 'direct' : 'room' })), ...live]
    .sort((a, b) => Date.parse(a.utc) - Date.parse(b.utc));
  conv.oldest = page.length ? page[0].id : null;
  conv.exhausted = page.length < PAGE;
  conv.loaded = true;
  renderList(conv);
  scrollToEnd(conv);
  updateOlder(conv);
  markRead(conv);
}

async function loadOlder(conv) {
  if (!conv.loaded) return loadFresh(conv);
  if (conv.exhausted || conv.oldest === null) {
    conv.exhausted = true;
    updateOlder(conv);
    return undefined;
  }
  conv.paging = true;
  try {
    const page = await connection.invoke('RecentMessagesBefore', conv.key, conv.oldest, PAGE);
    conv.exhausted = page.length < PAGE;
    if (page.length) {
      conv.oldest = page[0].id;
      const known = new Set(conv.items.map((m) => m.id));
      conv.items.unshift(...page.filter((m) => !known.has(m.id)).map((m) => ({ ...m, kind: conv.kind === 'dm' ? 'direct' : 'room' })));
      const fromEnd = conv.list.scrollHeight - conv.list.scrollTop;
      renderList(conv);
      conv.list.scrollTop = conv.list.scrollHeight - fromEnd;
      announce(`${page.length} older messages loaded`);
    } else {
      announce('No older messages');
    }
    updateOlder(conv);
  } finally {
    conv.paging = false;
  }
  return undefined;
}

function markRead(conv) {
  if (conv.key !== current || !visible() || (conv.kind !== 'room' && conv.kind !== 'dm')) return;
  if (!connection || connection.state !== signalR.HubConnectionState.Connected) return;
  const newest = conv.items.reduce((n, m) => (m.id != null && m.id > n ? m.id : n), 0);
  if (newest <= conv.marked) return;
  conv.marked = newest;
  connection.invoke('MarkRead', conv.key, newest).catch(() => { conv.marked = 0; });
}

// ---------- messages ----------

const FILE_LINE = /^📎 (.+) \(([^()]+)\) (\/uploads\/[^\s/?#]+)$/u;
const UPLOAD_LINK = /(?<=^|\s)\/uploads\/[^\s/?#]+/gu;

function fileIcon() {
  const svg = document.createElementNS('http://www.w3.org/2000/svg', 'svg');
  svg.setAttribute('viewBox', '0 0 24 24');
  svg.setAttribute('class', 'file-icon');
  svg.setAttribute('aria-hidden', 'true');
  const path = document.createElementNS('http://www.w3.org/2000/svg', 'path');
  path.setAttribute('d', 'M6 2.5h8l4.5 4.5v14.5H6zM14 2.5V7h4.5');
  svg.append(path);
  return svg;
}

/** The message text as nodes: text, with links to uploads as download links. */
function contentNodes(text) {
  const file = FILE_LINE.exec(text);
  if (file) {
    const link = el('a', { className: 'file', href: file[3], textContent: file[1] });
    link.setAttribute('download', file[1]);
    return [fileIcon(), link, el('span', { className: 'size', textContent: ` ${file[2]}` })];
  }
  const nodes = [];
  let at = 0;
  for (const match of text.matchAll(UPLOAD_LINK)) {
    nodes.push(document.createTextNode(text.slice(at, match.index)));
    const link = el('a', { href: match[0], textContent: match[0] });
    link.setAttribute('download', '');
    nodes.push(link);
    at = match.index + match[0].length;
  }
  nodes.push(document.createTextNode(text.slice(at)));
  return nodes;
}

const isLine = (m) => m.kind === 'system' || m.kind === 'notice';

function messageNode(m, prev) {
  const date = new Date(m.utc);
  const nodes = [];
  if (!prev || dayKey(new Date(prev.utc)) !== dayKey(date)) {
    nodes.push(el('li', { className: 'day' }, el('span', { textContent: dayLabel(date) })));
  }
  const li = el('li', { className: 'msg', title: date.toLocaleString() });
  if (m.id != null) li.dataset.id = String(m.id);
  if (isLine(m)) {
    li.classList.add(m.kind);
    li.append(el('span', { className: 'body', textContent: m.content }), ' ',
      el('time', { dateTime: m.utc, textContent: shortTime(date) }));
    nodes.push(li);
    return nodes;
  }
  const grouped = prev && !isLine(prev) && prev.fromUser === m.fromUser
    && dayKey(new Date(prev.utc)) === dayKey(date) && date - new Date(prev.utc) < GROUP_MS;
  const mine = m.fromUser === me;
  if (grouped) li.classList.add('grouped');
  if (mine) li.classList.add('mine');
  if (me && new RegExp(`(^|\\W)@${me.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}(?!\\w)`, 'u').test(m.content)) li.classList.add('mention');
  if (grouped) {
    li.append(hiddenText(`${m.fromUser}, ${shortTime(date)}: `));
  } else {
    li.append(el('div', { className: 'meta' },
      el('span', { className: 'author', textContent: m.fromUser }), ' ',
      el('time', { dateTime: m.utc, textContent: shortTime(date) })));
  }
  li.append(el('div', { className: 'body' }, ...contentNodes(m.content)));
  if (m.id != null && (mine || admin)) {
    const del = el('button', { type: 'button', className: 'delete', textContent: 'Delete' });
    del.setAttribute('aria-label', `Delete the message of ${shortTime(date)}: ${m.content.slice(0, 40)}`);
    del.addEventListener('click', () => {
      connection.invoke('DeleteMessage', m.id).catch(report);
    });
    li.append(del);
  }
  li.append(el('span', { className: 'receipt' }));
  nodes.push(li);
  return nodes;
}

function renderList(conv) {
  const nodes = [];
  conv.items.forEach((m, i) => nodes.push(...messageNode(m, conv.items[i - 1])));
  conv.list.replaceChildren(...nodes);
  renderReceipts(conv);
}

function renderReceipts(conv) {
  for (const span of conv.list.querySelectorAll('.receipt')) span.textContent = '';
  const byId = new Map();
  for (const [user, id] of conv.reads) byId.set(id, [...(byId.get(id) ?? []), user]);
  for (const [id, users] of byId) {
    const span = conv.list.querySelector(`li[data-id="${CSS.escape(String(id))}"] .receipt`);
    if (span) span.textContent = `Seen by ${users.sort().join(', ')}`;
  }
}

/** Adds a live message (or notice) to a conversation. */
function addLive(conv, m) {
  if (m.id != null && conv.items.some((x) => x.id === m.id)) return;
  const prev = conv.items[conv.items.length - 1];
  conv.items.push(m);
  if (conv.oldest === null && m.id != null && conv.loaded) conv.oldest = m.id;
  if (!conv.loaded) return;
  const list = conv.list;
  const atEnd = list.scrollHeight - list.scrollTop - list.clientHeight < 80;
  list.append(...messageNode(m, prev));
  if (atEnd || m.fromUser === me) scrollToEnd(conv);
}

function notice(text, conv = convs.get(current)) {
  if (conv) addLive(conv, { kind: 'notice', content: text, utc: new Date().toISOString(), id: null });
}

function report(error) {
  const text = String(error?.message ?? error).replace(/^An unexpected error occurred invoking '\w+' on the server\. HubException: /, '');
  notice(`⚠ ${text}`);
  announce(text);
}

function onChatMessage(m) {
  if (!m || typeof m !== 'object') return;
  if (m.kind === 'system' && m.room == null) refreshOnline().catch(() => {});
  let conv;
  if (m.kind === 'direct') conv = convs.get(m.room) ?? addConversation('dm', dmPeer(m.room));
  else if (m.kind === 'room' || (m.kind === 'system' && m.room != null)) conv = convs.get(m.room);
  else conv = convs.get(ALL);
  if (!conv) return; // a room we just left
  addLive(conv, m);
  if (isLine(m) || m.fromUser === me) {
    renderSidebar();
    return;
  }
  const seen = conv.key === current && visible();
  if (!seen) conv.unread += 1;
  renderSidebar();
  if (seen) {
    markRead(conv);
    announce(`${m.fromUser}: ${m.content}`);
  } else {
    announce(`New message from ${m.fromUser} in ${title(conv)}`);
  }
  if (m.kind === 'direct') save();
}

function onMentioned(from, room) {
  const conv = convs.get(room);
  if (conv && !(conv.key === current && visible())) {
    conv.mentions += 1;
    renderSidebar();
  } else if (!conv) {
    notice(`${from} mentioned you in #${room} (join it to read)`);
  }
  announce(`${from} mentioned you in #${room}`);
}

function onReadReceipt(user, room, id) {
  const conv = convs.get(room);
  if (!conv || user === me) return;
  if ((conv.reads.get(user) ?? -1) >= id) return;
  conv.reads.set(user, id);
  renderReceipts(conv);
}

function onDeleted(id) {
  for (const conv of convs.values()) {
    const at = conv.items.findIndex((m) => m.id === id);
    if (at < 0) continue;
    conv.items.splice(at, 1);
    const focused = conv.list.contains(document.activeElement);
    const top = conv.list.scrollTop;
    renderList(conv);
    conv.list.scrollTop = top;
    if (focused) conv.list.focus();
    announce('A message was deleted');
  }
}

function onTyping(user, isTyping) {
  clearTimeout(typers.get(user));
  typers.delete(user);
  if (isTyping) typers.set(user, setTimeout(() => onTyping(user, false), 4000));
  const names = [...typers.keys()];
  $('typing').textContent = names.length === 0 ? ''
    : names.length === 1 ? `${names[0]} is typing…` : `${names.join(', ')} are typing…`;
}

async function refreshOnline() {
  if (!connection || connection.state !== signalR.HubConnectionState.Connected) return;
  const users = await connection.invoke('OnlineUsers');
  $('online').replaceChildren(...users.map((user) => {
    if (user === me) return el('li', { className: 'you' }, el('span', { textContent: `${user} (you)` }));
    const open = el('button', { type: 'button', className: 'person', textContent: user });
    open.setAttribute('aria-label', `Message ${user}`);
    open.title = `Message ${user}`;
    open.addEventListener('click', () => openDm(user).catch(report));
    const li = el('li', {}, open);
    if (admin) {
      for (const [label, action] of [['Mute', () => connection.invoke('MuteUser', user, 5)], ['Kick', () => connection.invoke('KickUser', user)]]) {
        const button = el('button', { type: 'button', className: 'ghost small', textContent: label });
        button.setAttribute('aria-label', `${label} ${user}`);
        button.addEventListener('click', () => action().catch(report));
        li.append(button);
      }
    }
    return li;
  }));
}

async function openDm(user) {
  const conv = addConversation('dm', user);
  save();
  await show(conv.key, { focus: true });
}

async function sendTo(conv, text) {
  if (conv.kind === 'room') await connection.invoke('SendToRoom', conv.name, text);
  else if (conv.kind === 'dm') await connection.invoke('SendDirect', conv.name, text);
  else await connection.invoke('SendMessage', text);
}

// ---------- uploads ----------

function base64(blob) {
  return new Promise((resolve, reject) => {
    const reader = new FileReader();
    reader.onload = () => resolve(reader.result.slice(reader.result.indexOf(',') + 1));
    reader.onerror = () => reject(reader.error);
    reader.readAsDataURL(blob);
  });
}

let uploading = null; // { size } of the upload under way
async function upload(file) {
  const conv = convs.get(current);
  if (!conv || !connection || connection.state !== signalR.HubConnectionState.Connected) return;
  if (file.size > MAX_UPLOAD) {
    report(`${file.name} is ${formatSize(file.size)}; uploads are limited to 10 MiB.`);
    return;
  }
  while (uploading) await uploading.done.catch(() => {});
  const subject = new signalR.Subject();
  const progress = $('upload-progress');
  $('upload-label').textContent = `Uploading ${file.name}…`;
  progress.max = Math.max(file.size, 1);
  progress.value = 0;
  $('upload').hidden = false;
  const done = connection.invoke('UploadFile', file.name, file.type || 'application/octet-stream', subject);
  uploading = { size: file.size, done };
  let failed = false;
  done.catch(() => { failed = true; });
  try {
    for (let at = 0; at < file.size && !failed; at += CHUNK) {
      const chunk = await base64(file.slice(at, at + CHUNK));
      if (connection?.state !== signalR.HubConnectionState.Connected) break;
      subject.next(chunk);
    }
    subject.complete();
    const result = await done;
    progress.value = progress.max;
    $('upload-label').textContent = `Uploaded ${result.name}`;
    announce(`Uploaded ${result.name}`);
    await sendTo(conv, `📎 ${result.name.slice(0, 200)} (${formatSize(result.bytes)}) ${result.url}`);
  } catch (error) {
    $('upload-label').textContent = `Upload of ${file.name} failed`;
    report(error);
  } finally {
    uploading = null;
    setTimeout(() => { if (!uploading) $('upload').hidden = true; }, 1500);
  }
}

// ---------- connection ----------

function buildConnection() {
  const c = new signalR.HubConnectionBuilder()
    .withUrl('/hubs/chat') // the session cookie authenticates every request
    .withAutomaticReconnect([0, 1000, 2000, 5000, 10000, 10000, 30000])
    .configureLogging(signalR.LogLevel.Warning)
    .build();
  c.on('ReceiveMessage', () => {}); // the legacy event; ChatMessage carries the same with ids
  c.on('ChatMessage', onChatMessage);
  c.on('Typing', onTyping);
  c.on('ReadReceipt', onReadReceipt);
  c.on('Mentioned', onMentioned);
  c.on('MessageDeleted', onDeleted);
  c.on('UploadProgress', (bytes) => {
    if (uploading) $('upload-progress').value = Math.min(bytes, $('upload-progress').max);
  });
  c.onreconnecting(() => {
    setState('reconnecting');
    banner('Connection lost. Reconnecting…');
  });
  c.onreconnected(() => onConnected().catch(report));
  c.onclose(() => {
    if (connection !== c) return; // signed out
    setState('offline');
    startLoop(c);
  });
  return c;
}

/** Starts (or restarts) the connection until it works or the session is gone. */
async function startLoop(c) {
  for (let attempt = 0; connection === c; attempt++) {
    try {
      if (attempt === 0) setState('connecting');
      await c.start();
      await onConnected();
      return;
    } catch {
      if (connection !== c) return;
      const session = await getSession().catch(() => null);
      if (session && !session.user) {
        await signedOut('Your session ended. Sign in again.');
        return;
      }
      const wait = [1, 2, 5, 10, 15][Math.min(attempt, 4)];
      setState('offline');
      banner(`Cannot reach the server. Retrying in ${wait} s…`);
      await sleep(wait * 1000);
    }
  }
}

async function onConnected() {
  setState('connected');
  banner(null);
  for (const conv of convs.values()) {
    if (conv.kind !== 'room') continue;
    try {
      await connection.invoke('JoinRoom', conv.name);
    } catch (error) {
      report(error);
    }
  }
  for (const conv of convs.values()) {
    if (conv.kind !== 'all' && conv.key !== current) conv.loaded = false;
    conv.marked = 0;
  }
  await refreshOnline().catch(() => {});
  const conv = convs.get(current);
  if (conv && conv.kind !== 'all') await loadFresh(conv);
  updateOlder(conv);
}

async function getSession() {
  const response = await fetch('/auth/session', { cache: 'no-store', credentials: 'same-origin' });
  if (!response.ok) throw new Error(`GET /auth/session: ${response.status}`);
  return response.json();
}

async function signedIn(user, roles = []) {
  me = user;
  admin = roles.includes('Admin');
  document.body.classList.add('signed-in');
  $('signin-view').hidden = true;
  $('chat').hidden = false;
  $('me').textContent = user;
  $('me').hidden = false;
  $('signout').hidden = false;
  const saved = remembered();
  addConversation('all', 'everyone');
  for (const room of saved.rooms) addConversation('room', room);
  for (const peer of saved.dms ?? []) addConversation('dm', peer);
  if (!saved.rooms.length && !convs.has('lobby')) addConversation('room', 'lobby');
  await show(convs.has(saved.current) ? saved.current : (convs.has('lobby') ? 'lobby' : saved.rooms[0] ?? ALL));
  connection = buildConnection();
  await startLoop(connection);
}

/** Shows the sign-in view, ending this tab's connection. */
async function signedOut(message) {
  const c = connection;
  connection = null;
  me = null;
  document.body.classList.remove('signed-in');
  await c?.stop().catch(() => {});
  for (const conv of [...convs.values()]) removeConversation(conv);
  current = null;
  setState('signed out');
  banner(null);
  $('chat').hidden = true;
  $('me').hidden = true;
  $('signout').hidden = true;
  $('signin-view').hidden = false;
  $('signin').hidden = !devLogin;
  $('idp').hidden = devLogin;
  $(devLogin ? 'signin-error' : 'idp-error').textContent = message ?? '';
  if (devLogin) $('name').focus();
}

/** Production sign-in: a `#token=…` fragment is exchanged for the session cookie, then removed. */
async function tokenLogin() {
  const token = new URLSearchParams(location.hash.slice(1)).get('token');
  history.replaceState(null, '', location.pathname + location.search);
  if (!token) return null;
  const response = await fetch('/auth/login', { method: 'POST', headers: { Authorization: `Bearer ${token}` } });
  if (!response.ok) return `The sign-in link was not accepted (${response.status}).`;
  channel?.postMessage({ type: 'signin' });
  return null;
}

async function boot() {
  let problem = null;
  if (/^#token=/.test(location.hash)) problem = await tokenLogin().catch((e) => e.message);
  let session;
  try {
    session = await getSession();
  } catch {
    session = { user: null, devLogin: true }; // an older server: dev login as before
  }
  devLogin = session.devLogin !== false;
  if (session.user) await signedIn(session.user, session.roles);
  else await signedOut(problem);
}

// ---------- controls ----------

$('signin').addEventListener('submit', async (event) => {
  event.preventDefault();
  const name = $('name').value.trim();
  if (!name) return;
  const query = new URLSearchParams({ user: name });
  if ($('admin').checked) query.set('role', 'Admin');
  const response = await fetch(`/auth/dev-login?${query}`, { method: 'POST' });
  if (!response.ok) {
    $('signin-error').textContent = `Sign-in failed (${response.status}).`;
    return;
  }
  const { user } = await response.json();
  const { roles } = await getSession().catch(() => ({ roles: [] }));
  $('signin-error').textContent = '';
  channel?.postMessage({ type: 'signin' });
  await signedIn(user, roles);
  $('text').focus();
});

$('signout').addEventListener('click', async () => {
  await signedOut();
  await fetch('/auth/logout', { method: 'POST' }).catch(() => {});
  channel?.postMessage({ type: 'signout' });
  try { localStorage.setItem('hubcast.signout', String(Date.now())); } catch { /* no storage */ }
});

// Other tabs: a sign-out ends this tab too; a sign-in elsewhere signs this tab in.
async function otherTab(type) {
  if (type === 'signout' && me) await signedOut('You signed out in another tab.');
  if (type === 'signin' && !me) await boot();
}
channel?.addEventListener('message', (event) => otherTab(event.data?.type).catch(() => {}));
window.addEventListener('storage', (event) => {
  if (event.key === 'hubcast.signout' && !channel) otherTab('signout').catch(() => {});
});

$('join').addEventListener('submit', async (event) => {
  event.preventDefault();
  const room = $('room').value.trim().replace(/^#/, '').normalize('NFKC'); // as the hub names rooms
  if (!room) return;
  const known = convs.has(room);
  const conv = addConversation('room', room); // before joining: the join line goes to it
  try {
    await connection.invoke('JoinRoom', room);
    $('room').value = '';
    save();
    await show(conv.key, { focus: true });
  } catch (error) {
    if (!known) removeConversation(conv);
    report(error);
  }
});

$('leave').addEventListener('click', async () => {
  const conv = convs.get(current);
  if (!conv || conv.kind === 'all') return;
  try {
    if (conv.kind === 'room') await connection.invoke('LeaveRoom', conv.name);
    removeConversation(conv);
    save();
    await show(convs.has('lobby') ? 'lobby' : convs.keys().next().value, { focus: true });
    announce(`Left ${title(conv)}`);
  } catch (error) {
    report(error);
  }
});

$('older').addEventListener('click', () => {
  const conv = convs.get(current);
  if (conv) loadOlder(conv).catch(report);
});

$('menu').addEventListener('click', () => {
  const open = $('chat').classList.toggle('nav-open');
  $('menu').setAttribute('aria-expanded', String(open));
  if (open) $('sidebar').querySelector('.conv[aria-current]')?.focus();
});

let typingTimeout = null;
$('text').addEventListener('input', () => {
  if (!connection || connection.state !== signalR.HubConnectionState.Connected) return;
  if (typingTimeout === null) connection.invoke('SetTyping', true).catch(() => {});
  clearTimeout(typingTimeout);
  typingTimeout = setTimeout(() => {
    typingTimeout = null;
    connection?.invoke('SetTyping', false).catch(() => {});
  }, 1500);
});

$('send').addEventListener('submit', async (event) => {
  event.preventDefault();
  const text = $('text').value;
  const conv = convs.get(current);
  if (!text.trim() || !conv || !connection) return;
  try {
    const dm = /^\/dm\s+(\S+)\s+([\s\S]+)$/.exec(text);
    if (dm) {
      await connection.invoke('SendDirect', dm[1], dm[2]);
      $('text').value = '';
      await openDm(dm[1]);
    } else {
      await sendTo(conv, text);
      $('text').value = '';
    }
    clearTimeout(typingTimeout);
    typingTimeout = null;
    connection.invoke('SetTyping', false).catch(() => {});
  } catch (error) {
    report(error);
  }
});

$('attach').addEventListener('click', () => $('file').click());
$('file').addEventListener('change', async () => {
  const files = [...$('file').files];
  $('file').value = '';
  for (const file of files) await upload(file);
  $('text').focus();
});

let dragDepth = 0;
const hasFiles = (event) => [...(event.dataTransfer?.types ?? [])].includes('Files');
$('conversation').addEventListener('dragenter', (event) => {
  if (!hasFiles(event)) return;
  dragDepth += 1;
  $('drop').hidden = false;
});
$('conversation').addEventListener('dragover', (event) => {
  if (hasFiles(event)) event.preventDefault();
});
$('conversation').addEventListener('dragleave', () => {
  dragDepth = Math.max(0, dragDepth - 1);
  if (dragDepth === 0) $('drop').hidden = true;
});
$('conversation').addEventListener('drop', async (event) => {
  event.preventDefault();
  dragDepth = 0;
  $('drop').hidden = true;
  for (const file of event.dataTransfer?.files ?? []) await upload(file);
});

// Alt+↑ / Alt+↓ switch conversation; Escape closes the conversation list on a phone.
document.addEventListener('keydown', (event) => {
  if (!me) return;
  if (event.altKey && (event.key === 'ArrowUp' || event.key === 'ArrowDown')) {
    event.preventDefault();
    const keys = [...$('sidebar').querySelectorAll('.conv')].map((b) => b.dataset.key);
    const at = keys.indexOf(current);
    const next = keys[(at + (event.key === 'ArrowDown' ? 1 : keys.length - 1)) % keys.length];
    if (next !== undefined) show(next, { focus: true }).catch(report);
  } else if (event.key === 'Escape' && $('chat').classList.contains('nav-open')) {
    $('chat').classList.remove('nav-open');
    $('menu').setAttribute('aria-expanded', 'false');
    $('menu').focus();
  }
});

document.addEventListener('visibilitychange', () => {
  const conv = convs.get(current);
  if (!visible() || !conv) return;
  conv.unread = 0;
  conv.mentions = 0;
  renderSidebar();
  markRead(conv);
});

// A sign-in link opened in a tab already showing the page changes only the fragment.
window.addEventListener('hashchange', async () => {
  if (!/^#token=/.test(location.hash)) return;
  if (me) await signedOut();
  await boot();
});

boot().catch(report);
