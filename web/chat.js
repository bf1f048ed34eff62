// The hubcast chat page: the seed's chat.js flows (ReceiveMessage, Typing, SendMessage, SetTyping) plus
// rooms, direct messages, presence, history with "load older", read receipts and admin actions.
// Message text is always rendered as text (textContent), never as HTML.
'use strict';

const $ = (id) => document.getElementById(id);
let connection = null;
let me = null;
let admin = false;
let current = null; // the room shown, or null for the broadcast chat
let oldest = null; // id of the oldest message shown of the current room
const rooms = new Set();

function setState(text) {
  const state = $('state');
  state.textContent = text;
  state.className = `state ${text}`;
}

function line({ from, text, utc, system, id }) {
  const li = document.createElement('li');
  if (id !== undefined) li.dataset.id = String(id);
  const time = document.createElement('span');
  time.className = 'time';
  time.textContent = new Date(utc).toLocaleTimeString();
  li.append(time);
  if (system) {
    const body = document.createElement('span');
    body.className = 'system';
    body.textContent = text;
    li.append(body);
  } else {
    const who = document.createElement('span');
    who.className = 'from';
    who.textContent = `${from}:`;
    const body = document.createElement('span');
    body.className = 'text';
    body.textContent = text;
    li.append(who, body);
    if (admin && id !== undefined) {
      const del = document.createElement('button');
      del.textContent = 'delete';
      del.addEventListener('click', () => connection.invoke('DeleteMessage', id).catch(report));
      li.append(del);
    }
  }
  return li;
}

function append(entry) {
  const list = $('messages');
  list.append(line(entry));
  list.scrollTop = list.scrollHeight;
}

function report(error) {
  append({ text: `⚠ ${error.message || error}`, utc: Date.now(), system: true });
}

async function refreshOnline() {
  const users = await connection.invoke('OnlineUsers');
  const list = $('online');
  list.replaceChildren(...users.map((user) => {
    const li = document.createElement('li');
    li.textContent = user;
    if (admin && user !== me) {
      for (const [label, action] of [['mute', () => connection.invoke('MuteUser', user, 5)], ['kick', () => connection.invoke('KickUser', user)]]) {
        const button = document.createElement('button');
        button.textContent = label;
        button.addEventListener('click', () => action().catch(report));
        li.append(button);
      }
    }
    return li;
  }));
}

async function show(room) {
  current = room;
  $('current').textContent = room ?? 'everyone';
  $('messages').replaceChildren();
  oldest = null;
  $('older').hidden = room === null;
  if (room !== null) await loadOlder();
}

async function loadOlder() {
  const page = oldest === null
    ? await connection.invoke('RecentMessages', current, 50)
    : await connection.invoke('RecentMessagesBefore', current, oldest, 50);
  if (page.length === 0) return;
  oldest = page[0].id;
  const list = $('messages');
  const nodes = page.map((m) => line({ from: m.fromUser, text: m.content, utc: m.utc, id: m.id }));
  list.prepend(...nodes);
  const newest = page[page.length - 1];
  connection.invoke('MarkRead', current, newest.id).catch(() => {});
}

function renderRooms() {
  $('rooms').replaceChildren(...[null, ...rooms].map((room) => {
    const li = document.createElement('li');
    const open = document.createElement('button');
    open.textContent = room ?? 'everyone';
    open.addEventListener('click', () => show(room).catch(report));
    li.append(open);
    if (room !== null) {
      const leave = document.createElement('button');
      leave.textContent = 'leave';
      leave.addEventListener('click', async () => {
        await connection.invoke('LeaveRoom', room).catch(report);
        rooms.delete(room);
        renderRooms();
        if (current === room) await show(null);
      });
      li.append(leave);
    }
    return li;
  }));
}

async function connect() {
  connection = new signalR.HubConnectionBuilder()
    .withUrl('/hubs/chat') // the session cookie authenticates every request
    .withAutomaticReconnect()
    .build();
  connection.on('ReceiveMessage', (from, text, utc) => {
    if (from === 'SYSTEM') {
      append({ text, utc, system: true });
      refreshOnline().catch(() => {});
    } else {
      append({ from, text, utc });
    }
  });
  let typingClear = null;
  connection.on('Typing', (user, isTyping) => {
    $('typing').textContent = isTyping ? `${user} is typing…` : '';
    clearTimeout(typingClear);
    typingClear = setTimeout(() => { $('typing').textContent = ''; }, 3000);
  });
  connection.on('ReadReceipt', (user, room, id) => {
    if (room !== current || user === me) return;
    const li = $('messages').querySelector(`li[data-id="${CSS.escape(String(id))}"]`);
    if (!li) return;
    const seen = li.querySelector('.receipt') ?? li.appendChild(Object.assign(document.createElement('span'), { className: 'receipt' }));
    seen.textContent = `seen by ${user}`;
  });
  connection.on('Mentioned', (from, room) => append({ text: `${from} mentioned you in ${room}`, utc: Date.now(), system: true }));
  connection.on('MessageDeleted', (id) => $('messages').querySelector(`li[data-id="${CSS.escape(String(id))}"]`)?.remove());
  connection.onreconnecting(() => setState('reconnecting'));
  connection.onreconnected(async () => {
    setState('connected');
    for (const room of rooms) await connection.invoke('JoinRoom', room).catch(report);
  });
  connection.onclose((error) => {
    setState('disconnected');
    if (error) report(error);
  });
  setState('connecting');
  await connection.start();
  setState('connected');
  $('signin').hidden = true;
  $('chat').hidden = false;
  renderRooms();
  await refreshOnline();
}

$('signin').addEventListener('submit', async (event) => {
  event.preventDefault();
  const name = $('name').value.trim();
  admin = $('admin').checked;
  const query = new URLSearchParams({ user: name });
  if (admin) query.set('role', 'Admin');
  const response = await fetch(`/auth/dev-login?${query}`, { method: 'POST' });
  if (!response.ok) {
    alert(`Sign-in failed: ${response.status}`);
    return;
  }
  me = (await response.json()).user;
  await connect().catch(report);
});

$('signout').addEventListener('click', async () => {
  await connection?.stop();
  await fetch('/auth/logout', { method: 'POST' });
  location.reload();
});

$('join').addEventListener('submit', async (event) => {
  event.preventDefault();
  const room = $('room').value.trim();
  try {
    await connection.invoke('JoinRoom', room);
    rooms.add(room);
    renderRooms();
    await show(room);
  } catch (error) {
    report(error);
  }
});

$('older').addEventListener('click', () => loadOlder().catch(report));
$('messages').addEventListener('scroll', () => {
  if ($('messages').scrollTop === 0 && current !== null) loadOlder().catch(report);
});

let typingTimeout = null;
$('text').addEventListener('input', () => {
  if (!connection) return;
  connection.invoke('SetTyping', true).catch(() => {});
  clearTimeout(typingTimeout);
  typingTimeout = setTimeout(() => connection.invoke('SetTyping', false).catch(() => {}), 1200);
});

$('send').addEventListener('submit', async (event) => {
  event.preventDefault();
  const text = $('text').value;
  if (!text.trim()) return;
  try {
    const dm = /^\/dm\s+(\S+)\s+([\s\S]+)$/.exec(text);
    if (dm) {
      await connection.invoke('SendDirect', dm[1], dm[2]);
      append({ from: `${me} → ${dm[1]}`, text: dm[2], utc: Date.now() });
    } else if (current === null) {
      await connection.invoke('SendMessage', text);
    } else {
      await connection.invoke('SendToRoom', current, text);
    }
    $('text').value = '';
    await connection.invoke('SetTyping', false);
  } catch (error) {
    report(error);
  }
});
