// The demo page: a chat room on demo.chat.<room> (retained, resumed across reloads and
// broker restarts) and a chart of demo.metrics, the broker's own figures every second.
import { Switchboard } from '/client/switchboard.js';

const params = new URLSearchParams(location.search);
const room = (params.get('room') ?? 'lobby').replace(/[^A-Za-z0-9_-]/g, '') || 'lobby';
const topic = `demo.chat.${room}`;
const client = new Switchboard('/');
const $ = (id) => document.getElementById(id);

/** What tests (and curious people) can watch: the page's state. */
const demo = { client, topic, chat: [], metrics: [], listeners: new Set() };
window.switchboardDemo = demo;
const changed = () => { for (const listener of demo.listeners) listener(); };

$('room').textContent = topic;
$('name').value = localStorage.getItem('switchboard-demo-name') ?? '';
client.addEventListener('state', ({ detail }) => {
  $('status').dataset.state = detail.state;
  $('status').textContent = detail.state === 'disconnected' && detail.retryIn !== undefined
    ? `disconnected, retrying in ${(detail.retryIn / 1000).toFixed(1)} s` : detail.state;
  changed();
});

client.subscribe(topic, { from: { last: 100 } }, (message) => {
  const { name, text } = message.data ?? {};
  demo.chat.push({ seq: message.seq, name: String(name ?? '?'), text: String(text ?? '') });
  const item = document.createElement('li');
  const who = document.createElement('span');
  who.className = 'who';
  who.textContent = String(name ?? '?');
  const time = document.createElement('span');
  time.className = 'meta';
  time.textContent = ` ${new Date(message.time).toLocaleTimeString()}`;
  item.append(who, String(text ?? ''), time);
  $('messages').append(item);
  $('messages').scrollTop = $('messages').scrollHeight;
  changed();
});

$('chat-form').addEventListener('submit', async (event) => {
  event.preventDefault();
  const name = $('name').value.trim();
  const text = $('text').value.trim();
  if (!name || !text) return;
  localStorage.setItem('switchboard-demo-name', name);
  $('text').value = '';
  $('send-status').textContent = '';
  try {
    await client.publish(topic, { name, text }, { ack: true });
  } catch (error) {
    // Shown in the page, not in a modal alert, which would stop the page (and its chat) until dismissed.
    // A lost connection may have taken the message before its ack: the room then shows it once.
    if (!$('text').value) $('text').value = text;
    $('send-status').textContent = `not confirmed: ${error.message}`;
  }
});

client.subscribe('demo.metrics', { from: 'latest' }, (message) => {
  demo.metrics.push(message.data);
  if (demo.metrics.length > 60) demo.metrics.shift();
  const m = message.data;
  $('figures').textContent = `${m.connections} connections, ${m.subscriptions} subscriptions, `
    + `${m.published_per_second} published/s, ${m.delivered_per_second} delivered/s`;
  draw();
  changed();
});

const series = [['connections', '#0b5cad'], ['published_per_second', '#b3261e'], ['delivered_per_second', '#1a7f37']];

/** The last minute of demo.metrics as lines, scaled to the largest value shown. */
function draw() {
  const canvas = $('chart');
  const ratio = window.devicePixelRatio || 1;
  const width = canvas.clientWidth || canvas.width;
  const height = canvas.clientHeight || canvas.height;
  canvas.width = width * ratio;
  canvas.height = height * ratio;
  const g = canvas.getContext('2d');
  g.scale(ratio, ratio);
  g.clearRect(0, 0, width, height);
  const pad = 28;
  const max = Math.max(1, ...demo.metrics.flatMap((m) => series.map(([key]) => m[key] ?? 0)));
  g.strokeStyle = '#c9d1db';
  g.fillStyle = '#4a5360';
  g.font = '12px system-ui, sans-serif';
  for (let i = 0; i <= 4; i++) {
    const y = pad / 2 + (height - pad) * (i / 4);
    g.beginPath();
    g.moveTo(pad, y);
    g.lineTo(width - 4, y);
    g.stroke();
    const value = max * (1 - i / 4);
    g.fillText(max < 10 ? value.toFixed(1) : String(Math.round(value)), 2, y + 4);
  }
  const step = (width - pad - 4) / 59;
  for (const [key, color] of series) {
    g.strokeStyle = color;
    g.lineWidth = 2;
    g.beginPath();
    demo.metrics.forEach((m, i) => {
      const x = pad + (60 - demo.metrics.length + i) * step;
      const y = pad / 2 + (height - pad) * (1 - (m[key] ?? 0) / max);
      if (i === 0) g.moveTo(x, y); else g.lineTo(x, y);
    });
    g.stroke();
  }
}
draw();
window.addEventListener('resize', draw);
