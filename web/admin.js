// The admin page: the admin HTTP API (docs/admin-api.md) for a token typed in here and
// kept in sessionStorage, refreshed every 2 s, and a tail of any topic over switchboard.js.
import { Switchboard } from '/client/switchboard.js';

const $ = (id) => document.getElementById(id);
let token = sessionStorage.getItem('switchboard-admin-token') ?? '';
let tail = null;
const admin = { loaded: 0, tail: [], listeners: new Set() };
window.switchboardAdmin = admin;
const changed = () => { for (const listener of admin.listeners) listener(); };

async function api(method, path, body) {
  const response = await fetch(`/admin/v1/${path}`, {
    method,
    headers: { Authorization: `Bearer ${token}`, ...(body ? { 'Content-Type': 'application/json' } : {}) },
    body: body ? JSON.stringify(body) : undefined,
  });
  const json = await response.json();
  if (!response.ok) throw new Error(json.error?.message ?? `HTTP ${response.status}`);
  return json;
}

function cell(row, text) {
  const td = document.createElement('td');
  td.textContent = text;
  row.append(td);
  return td;
}

function fill(table, rows, make) {
  const body = $(table).tBodies[0];
  // A keyboard user's focus on a row's button stays on that button's new copy, not lost every refresh.
  const focused = body.contains(document.activeElement) ? document.activeElement.getAttribute('aria-label') : null;
  body.replaceChildren(...rows.map((item) => { const tr = document.createElement('tr'); make(tr, item); return tr; }));
  if (focused) [...body.querySelectorAll('button')].find((button) => button.getAttribute('aria-label') === focused)?.focus();
}

async function refresh() {
  if (!token) return;
  try {
    const [info, connections, topics, tokens] = await Promise.all([
      api('GET', 'info'), api('GET', 'connections?limit=100'), api('GET', 'topics?limit=100'), api('GET', 'tokens'),
    ]);
    $('error').textContent = '';
    $('status').textContent = `signed in, version ${info.version}`;
    const replay = info.replay ?? {};
    fill('info', [
      ['uptime', `${Math.round(info.uptime_seconds)} s`], ['connections', info.connections],
      ['subscriptions', info.subscriptions], ['topics in memory', info.topics],
      ['messages in / out', `${info.messages_in} / ${info.messages_out}`],
      ['replay log', replay.enabled ? `${replay.status}, ${replay.committed} committed, queue ${replay.queue_depth}/${replay.queue_limit}, ${replay.size_bytes} bytes, ${replay.pruned} pruned` : 'off'],
      ['replayed to subscribers', info.replayed], ['gaps sent', info.gaps_sent],
      ...(info.nodes ? [['cluster nodes', info.nodes.map((n) => `${n.address} (${n.connections} conn.)`).join(', ')]] : []),
    ], (tr, [name, value]) => {
      const th = document.createElement('th');
      th.scope = 'row';
      th.textContent = name;
      tr.append(th);
      cell(tr, String(value));
    });
    fill('connections', connections.connections, (tr, c) => {
      cell(tr, c.id); cell(tr, c.principal); cell(tr, c.peer); cell(tr, c.subscriptions.join(' ')); cell(tr, `${Math.round(c.age_seconds)} s`);
    });
    fill('topics', topics.topics, (tr, t) => {
      cell(tr, t.name); cell(tr, String(t.last_seq)); cell(tr, String(t.messages_per_second)); cell(tr, String(t.subscribers));
      cell(tr, t.retained ? `${t.retained.count} msgs` : 'no');
      const button = document.createElement('button');
      button.type = 'button';
      button.className = 'secondary';
      button.textContent = 'Tail';
      button.setAttribute('aria-label', `Tail ${t.name}`);
      button.addEventListener('click', () => { $('tail-topic').value = t.name; startTail(t.name); });
      cell(tr, '').append(button);
    });
    fill('tokens', tokens.tokens, (tr, t) => {
      cell(tr, t.name); cell(tr, t.id);
      cell(tr, `${t.admin ? 'admin; ' : ''}sub ${t.subscribe.join(' ') || '-'}; pub ${t.publish.join(' ') || '-'}`);
      cell(tr, t.state);
      const td = cell(tr, '');
      if (t.state === 'active') {
        const button = document.createElement('button');
        button.type = 'button';
        button.className = 'secondary';
        button.textContent = 'Revoke';
        button.setAttribute('aria-label', `Revoke ${t.name} (${t.id})`);
        button.addEventListener('click', async () => {
          if (!confirm(`Revoke ${t.name}? Its connections are closed at once.`)) return;
          await api('DELETE', `tokens/${encodeURIComponent(t.id)}`).catch((e) => { $('error').textContent = e.message; });
          refresh();
        });
        td.append(button);
      }
    });
    admin.loaded += 1;
    changed();
  } catch (error) {
    $('error').textContent = error.message;
    $('status').textContent = 'not signed in';
  }
}

function startTail(pattern) {
  tail?.close();
  admin.tail = [];
  $('tail').replaceChildren();
  tail = new Switchboard('/', { getToken: async () => token });
  tail.subscribe(pattern, { from: { last: 20 } }, (m) => {
    const item = document.createElement('li');
    const body = m.binary ? `(${m.binary.byteLength} bytes)` : JSON.stringify(m.data);
    item.textContent = `${m.topic} #${m.seq} ${body}`;
    $('tail').prepend(item);
    while ($('tail').children.length > 200) $('tail').lastChild.remove();
    admin.tail.push(m);
    changed();
  });
}

$('token-form').addEventListener('submit', (event) => {
  event.preventDefault();
  token = $('token').value.trim();
  sessionStorage.setItem('switchboard-admin-token', token);
  refresh();
});
$('tail-form').addEventListener('submit', (event) => { event.preventDefault(); startTail($('tail-topic').value.trim()); });
$('create-form').addEventListener('submit', async (event) => {
  event.preventDefault();
  const list = (id) => $(id).value.split(',').map((s) => s.trim()).filter(Boolean);
  try {
    const created = await api('POST', 'tokens', { name: $('new-name').value.trim(), subscribe: list('new-sub'), publish: list('new-pub') });
    $('created').textContent = `Created ${created.id}: ${created.token} (shown once: copy it now)`;
    refresh();
  } catch (error) {
    $('error').textContent = error.message;
  }
});

$('token').value = token;
refresh();
setInterval(refresh, 2000);
