// Per-market chat: the log of the selected market, sending with a RECEIPT ("sending…" until it
// comes), and editing or deleting one's own messages. The gateway stamps every chat event with
// its sender; the page also ignores edits and deletes from anyone but a message's author.

import { el, h } from './dom.js';
import { fmtTime } from './format.js';
import { state, chatOf, nextSeq, MAX_CHAT, RECEIPT_TIMEOUT_MS } from './state.js';
import { sendWithReceipt } from './connection.js';

export function onChat(type, id, body) {
  if (!id) return;
  const c = chatOf(id);
  if (type === 'chat.send') {
    let e = null;
    if (body.user && body.user === state.me) {
      // our own message coming back: attach the gateway's id to the pending entry
      e = c.list.find((x) => x.own && x.id == null && x.text === body.text);
    }
    if (e) {
      e.id = body.id; e.ts = body.ts || e.ts; e.user = body.user;
    } else {
      e = { key: `m${nextSeq()}`, id: body.id, market: id, user: body.user, text: body.text, ts: body.ts || Date.now(), status: 'sent' };
      c.list.push(e);
      if (c.list.length > MAX_CHAT) {
        const gone = c.list.splice(0, c.list.length - MAX_CHAT);
        for (const g of gone) c.byId.delete(g.id);
      }
    }
    if (e.id != null) c.byId.set(e.id, e);
  } else if (type === 'chat.modify') {
    const e = c.byId.get(body.id);
    // only the author may change a message: the gateway stamps the sender on every event
    if (!e || (e.user != null && body.user !== e.user)) return;
    e.text = body.text; e.edited = true; e.editing = false; e.op = null;
  } else if (type === 'chat.delete') {
    const e = c.byId.get(body.id);
    if (!e || (e.user != null && body.user !== e.user)) return;
    e.deleted = true; e.editing = false; e.op = null;
  } else {
    return;
  }
  if (id === state.selected) renderChat();
}

function isOwn(e) { return e.user != null && e.user === state.me; }

export function renderChat() {
  const log = el.chatLog;
  const c = state.selected ? chatOf(state.selected) : { list: [] };
  const atBottom = log.scrollHeight - log.scrollTop - log.clientHeight < 40;
  // keep an in-progress edit box (and its focus/caret) intact
  const active = document.activeElement;
  const editingKey = active && active.closest && active.closest('.msg-edit') ? active.closest('.msg').dataset.key : null;
  log.textContent = '';
  if (!c.list.length) {
    log.append(h('li', { class: 'chat-empty', text: state.selected ? 'No messages yet. Say hello.' : 'Select a market to chat.' }));
  }
  for (const e of c.list) {
    const node = chatNode(e);
    log.append(node);
    if (e.key === editingKey) {
      const input = node.querySelector('.msg-edit input');
      if (input) { input.focus(); input.setSelectionRange(input.value.length, input.value.length); }
    }
  }
  if (atBottom) log.scrollTop = log.scrollHeight;
}

function chatNode(e) {
  const own = isOwn(e) || (e.own && e.id == null);
  const li = h('li', {
    class: `msg${own ? ' own' : ''}${e.deleted ? ' deleted' : ''}`,
    'data-key': e.key, 'data-id': e.id ?? false, 'data-status': e.status,
  });
  let status = null;
  if (e.op) status = h('span', { class: 'msg-status pending', text: e.op });
  else if (e.status === 'pending') status = h('span', { class: 'msg-status pending', text: 'sending…' });
  else if (e.status === 'failed') status = h('span', { class: 'msg-status failed', text: 'not confirmed' });
  else if (e.edited && !e.deleted) status = h('span', { class: 'msg-status', text: 'edited' });

  const meta = h('div', { class: 'msg-meta' },
    h('span', { class: 'msg-user', text: e.user || state.me || 'you' }),
    h('time', { datetime: new Date(e.ts).toISOString(), text: fmtTime(e.ts) }),
    status,
  );
  if (own && !e.deleted && e.id != null && !e.editing) {
    meta.append(h('span', { class: 'msg-actions' },
      h('button', { type: 'button', class: 'msg-edit-btn', 'aria-label': `Edit message: ${e.text}`, text: 'Edit', onclick: () => startEdit(e) }),
      h('button', { type: 'button', class: 'msg-delete-btn', 'aria-label': `Delete message: ${e.text}`, text: 'Delete', onclick: () => deleteMsg(e) }),
    ));
  }
  li.append(meta);
  if (e.deleted) {
    meta.append(h('span', { class: 'msg-text', text: 'message deleted' }));
  } else if (e.editing) {
    const input = h('input', { type: 'text', maxlength: '500', value: e.text, 'aria-label': 'Edit message' });
    const form = h('form', { class: 'msg-edit' }, input,
      h('button', { type: 'submit', class: 'btn btn-primary', text: 'Save' }),
      h('button', { type: 'button', class: 'btn', text: 'Cancel', onclick: () => { e.editing = false; renderChat(); } }));
    form.addEventListener('submit', (ev) => { ev.preventDefault(); saveEdit(e, input.value); });
    input.addEventListener('keydown', (ev) => { if (ev.key === 'Escape') { e.editing = false; renderChat(); el.chatInput.focus(); } });
    li.append(form);
  } else {
    li.append(h('div', { class: 'msg-text', text: e.text }));
  }
  return li;
}

function publishChat(market, eventType, body, onReceipt) {
  sendWithReceipt(`/app/market/${market}/chat`, { 'event-type': eventType, 'content-type': 'application/json' },
    JSON.stringify(body), onReceipt);
}

function sendChat(text) {
  const id = state.selected;
  if (!id || !state.connected) return;
  const c = chatOf(id);
  const e = { key: `m${nextSeq()}`, id: null, market: id, user: state.me, text, ts: Date.now(), status: 'pending', own: true };
  c.list.push(e);
  renderChat();
  el.chatLog.scrollTop = el.chatLog.scrollHeight;
  try {
    publishChat(id, 'chat.send', { text }, () => {
      e.status = 'sent';
      if (id === state.selected) renderChat();
    });
  } catch (err) {
    e.status = 'failed';
    renderChat();
    return;
  }
  setTimeout(() => {
    if (e.status === 'pending') { e.status = 'failed'; if (id === state.selected) renderChat(); }
  }, RECEIPT_TIMEOUT_MS);
}

function startEdit(e) {
  e.editing = true;
  renderChat();
  const input = el.chatLog.querySelector(`.msg[data-key="${e.key}"] .msg-edit input`);
  if (input) { input.focus(); input.select(); }
}

function saveEdit(e, text) {
  text = text.trim();
  e.editing = false;
  if (!text || text === e.text || !state.connected) { renderChat(); return; }
  e.op = 'saving…';
  renderChat();
  try {
    publishChat(e.market, 'chat.modify', { id: e.id, text }, () => {
      // the broadcast chat.modify carries the new text; the receipt only ends the wait
      if (e.op) { e.op = null; if (e.market === state.selected) renderChat(); }
    });
  } catch (err) {
    e.op = null; renderChat();
  }
  el.chatInput.focus();
}

function deleteMsg(e) {
  if (!state.connected) return;
  e.op = 'deleting…';
  renderChat();
  try {
    publishChat(e.market, 'chat.delete', { id: e.id }, () => {
      if (e.op) { e.op = null; if (e.market === state.selected) renderChat(); }
    });
  } catch (err) {
    e.op = null; renderChat();
  }
  el.chatInput.focus();
}

export function updateChatForm() {
  const ok = state.connected && !!state.selected;
  el.chatInput.disabled = !ok;
  el.chatSend.disabled = !ok;
  el.chatInput.placeholder = !state.selected ? 'Select a market to chat'
    : state.connected ? `Message ${state.selected} as ${state.me || 'guest'}…` : 'Waiting for connection…';
}

// The connection is gone: nothing sent on it will get a receipt any more.
export function failPending() {
  for (const c of state.chat.values()) {
    for (const e of c.list) { if (e.status === 'pending') e.status = 'failed'; e.op = null; }
  }
  if (state.selected) renderChat();
}

export function initChat() {
  el.chatForm.addEventListener('submit', (ev) => {
    ev.preventDefault();
    const text = el.chatInput.value.trim();
    if (!text) return;
    el.chatInput.value = '';
    sendChat(text);
  });
}
