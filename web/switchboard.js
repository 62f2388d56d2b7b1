// switchboard.js: the browser client of the Switchboard broker (wire protocol v1,
// docs/protocol.md). One dependency-free ES module; docs/browser.md shows its use.
// Same guarantees as the Swift SDK (docs/sdk.md): per subscription and topic, every seq
// at most once and in order across reconnects, and what cannot be replayed as a gap.

/** Reconnect timing: attempt n waits uniform(0, min(max, initial * 2^n)) milliseconds. */
export const defaultBackoff = Object.freeze({ initial: 500, max: 20000 });

/** The wait before reconnect attempt `attempt` (0 first), full jitter. */
export function backoffDelay(attempt, backoff = defaultBackoff, random = Math.random) {
  const ceiling = Math.min(backoff.max, backoff.initial * 2 ** Math.min(attempt, 30));
  return random() * ceiling;
}

/** NATS-style matching: `*` one segment, `>` one or more trailing segments. */
export function topicMatches(pattern, topic) {
  const p = pattern.split('.');
  const t = topic.split('.');
  for (let i = 0; i < p.length; i++) {
    if (p[i] === '>') return t.length > i;
    if (i >= t.length) return false;
    if (p[i] !== '*' && p[i] !== t[i]) return false;
  }
  return p.length === t.length;
}

/** A refusal from the broker: `code` is its stable error code (docs/protocol.md). */
export class SwitchboardError extends Error {
  constructor(code, message) {
    super(message || code);
    this.name = 'SwitchboardError';
    this.code = code;
  }
}

const isPattern = (name) => name.split('.').some((s) => s === '*' || s === '>');
const encoder = new TextEncoder();
const decoder = new TextDecoder();

/**
 * One subscription: call-back form (`onMessage` given to `subscribe`) or async-iterator
 * form (`for await (const event of sub)`), events being
 * `{type:'message', topic, seq, time, data, binary}` and `{type:'gap', topic, from, to, reason}`.
 */
export class Subscription extends EventTarget {
  constructor(client, pattern, from, onMessage, stored) {
    super();
    this.client = client;
    this.pattern = pattern;
    this.from = from;
    this.onMessage = onMessage;
    /** Per topic, the last seq handed to the application (a message's seq or a gap's `to`). */
    this.positions = new Map(Object.entries(stored?.positions ?? {}));
    /** The history the positions count in (`subscribed`'s epoch). */
    this.epoch = stored?.epoch ?? null;
    this.startedAt = Date.now();
    this.closed = false;
    this.queue = [];
    this.waiting = null;
    this.ready = new Promise((resolve, reject) => { this.settleReady = { resolve, reject }; });
    this.ready.catch(() => {});
  }

  /** The `sub` request for the current connection: resumes from the positions when any. */
  request(id) {
    const sub = { op: 'sub', topic: this.pattern, id };
    if (this.positions.size > 0) {
      sub.since = isPattern(this.pattern) ? Object.fromEntries(this.positions) : this.positions.get(this.pattern) ?? 0;
      if (this.epoch) sub.epoch = this.epoch;
    } else if (this.from && typeof this.from === 'object' && 'last' in this.from) {
      sub.last = this.from.last;
    } else if (this.from && typeof this.from === 'object' && 'seq' in this.from) {
      sub.since = isPattern(this.pattern) ? {} : this.from.seq;
    } else if (this.client.connections > 1) {
      // A `latest` subscription that saw nothing yet: what was published since it began.
      sub.since_time = this.startedAt;
    }
    return sub;
  }

  subscribed(epoch) {
    if (epoch && this.epoch && epoch !== this.epoch) {
      // The broker's database was replaced: the old positions count in another history.
      for (const [topic, to] of this.positions) this.deliver({ type: 'gap', topic, from: 1, to, reason: 'historyLost' });
      this.positions.clear();
    }
    if (epoch) this.epoch = epoch;
    this.client.persist(this);
    this.settleReady.resolve(this);
  }

  /** A message of a topic this subscription covers; `shared`: another subscription covers it too. */
  message(m, shared) {
    const last = this.positions.get(m.topic);
    if (last !== undefined && m.seq <= last) return;
    if (last !== undefined && m.seq > last + 1 && !shared) {
      this.deliver({ type: 'gap', topic: m.topic, from: last + 1, to: m.seq - 1, reason: 'unannounced' });
    }
    this.positions.set(m.topic, m.seq);
    this.client.persist(this);
    this.deliver({ type: 'message', ...m });
  }

  gap(g) {
    const last = this.positions.get(g.topic);
    if (last !== undefined && g.to <= last) return;
    this.positions.set(g.topic, g.to);
    this.client.persist(this);
    this.deliver({ type: 'gap', topic: g.topic, from: g.from, to: g.to, reason: 'missed' });
  }

  deliver(event) {
    if (event.type === 'gap') this.dispatchEvent(new CustomEvent('gap', { detail: event }));
    if (this.onMessage) {
      if (event.type === 'message') this.onMessage(event);
      return;
    }
    if (this.waiting) {
      const { resolve } = this.waiting;
      this.waiting = null;
      resolve({ value: event, done: false });
    } else {
      this.queue.push(event);
    }
  }

  fail(error) {
    this.settleReady.reject(error);
    this.end(error);
  }

  end(error) {
    if (this.closed) return;
    this.closed = true;
    this.client.forget(this);
    if (this.waiting) {
      const { resolve, reject } = this.waiting;
      this.waiting = null;
      if (error) reject(error); else resolve({ value: undefined, done: true });
    }
    this.error = error;
  }

  /** Unsubscribes (on the broker too, unless another subscription has the same pattern). */
  close() { this.end(null); }

  [Symbol.asyncIterator]() {
    return {
      next: () => {
        if (this.queue.length > 0) return Promise.resolve({ value: this.queue.shift(), done: false });
        if (this.closed) return this.error ? Promise.reject(this.error) : Promise.resolve({ value: undefined, done: true });
        return new Promise((resolve, reject) => { this.waiting = { resolve, reject }; });
      },
      return: () => {
        this.close();
        return Promise.resolve({ value: undefined, done: true });
      },
    };
  }
}

/**
 * A connection to the broker that reconnects by itself. Events: `state`
 * (`detail: {state, code, reason, retryIn}`; state is connecting, connected,
 * disconnected or closed) and `gap` (`detail` as a subscription's gap event).
 *
 * Options: `token` (sent as `?token=`), or `getToken` (async, asked before every
 * connection attempt); `persist` (a name: positions are kept in localStorage under it,
 * so a reload resumes); `backoff` ({initial, max} ms); `publishQueueLimit` (1000).
 */
export class Switchboard extends EventTarget {
  constructor(url, options = {}) {
    super();
    this.url = url;
    this.options = options;
    this.backoff = options.backoff ?? defaultBackoff;
    this.random = options.random ?? Math.random;
    this.publishQueueLimit = options.publishQueueLimit ?? 1000;
    this.state = 'connecting';
    this.socket = null;
    this.attempt = 0;
    this.connections = 0;
    this.nextID = 1;
    this.subscriptions = new Set();
    this.pendingSubs = new Map();
    this.pendingPublishes = new Map();
    this.outbox = [];
    this.timer = null;
    this.saveTimer = null;
    this.wake = () => { if (this.state === 'disconnected') this.reconnectNow(); };
    this.onVisibility = () => { if (globalThis.document?.visibilityState === 'visible') this.wake(); };
    globalThis.addEventListener?.('online', this.wake);
    globalThis.document?.addEventListener('visibilitychange', this.onVisibility);
    this.connect();
  }

  setState(state, extra = {}) {
    this.state = state;
    this.dispatchEvent(new CustomEvent('state', { detail: { state, ...extra } }));
  }

  async connect() {
    if (this.state === 'closed') return;
    this.setState('connecting');
    let token = this.options.token;
    try {
      if (this.options.getToken) token = await this.options.getToken();
    } catch (error) {
      this.retry(0, `getToken failed: ${error}`);
      return;
    }
    if (this.state === 'closed') return;
    const url = new URL(this.url, globalThis.location?.href);
    if (url.protocol === 'http:') url.protocol = 'ws:';
    if (url.protocol === 'https:') url.protocol = 'wss:';
    if (token) url.searchParams.set('token', token);
    let socket;
    try {
      socket = new WebSocket(url, 'switchboard.v1');
    } catch (error) {
      this.setState('closed', { reason: String(error) });
      return;
    }
    socket.binaryType = 'arraybuffer';
    this.socket = socket;
    socket.onopen = () => this.opened(socket);
    socket.onmessage = (event) => this.received(event.data);
    socket.onclose = (event) => this.lost(socket, event.code, event.reason);
  }

  opened(socket) {
    if (socket !== this.socket) return;
    this.attempt = 0;
    this.connections += 1;
    this.setState('connected');
    for (const sub of this.subscriptions) this.sendSub(sub);
    const queued = this.outbox;
    this.outbox = [];
    for (const item of queued) this.sendPublish(item);
  }

  sendSub(sub) {
    const id = `s${this.nextID++}`;
    this.pendingSubs.set(id, sub);
    this.socket.send(JSON.stringify(sub.request(id)));
  }

  lost(socket, code, reason) {
    if (socket !== this.socket) return;
    this.socket = null;
    this.pendingSubs.clear();
    for (const [, item] of this.pendingPublishes) item.reject(new SwitchboardError('connectionLost', 'the connection ended before the ack'));
    this.pendingPublishes.clear();
    if (this.state === 'closed') return;
    if (code === 4001) {
      this.close(`token revoked: ${reason}`);
      return;
    }
    // An expired token: ask getToken again at once.
    this.retry(code === 4002 && this.options.getToken ? 0 : null, reason, code);
  }

  retry(delay, reason, code) {
    const wait = delay ?? backoffDelay(this.attempt, this.backoff, this.random);
    this.attempt += 1;
    this.setState('disconnected', { code, reason, retryIn: wait });
    clearTimeout(this.timer);
    this.timer = setTimeout(() => { this.timer = null; this.connect(); }, wait);
  }

  /** Skips the backoff wait (done by itself on `online` and when the page becomes visible). */
  reconnectNow() {
    if (this.state !== 'disconnected') return;
    clearTimeout(this.timer);
    this.timer = null;
    this.connect();
  }

  received(data) {
    if (typeof data !== 'string') {
      this.dispatch(parseBinaryMessage(data));
      return;
    }
    const frame = JSON.parse(data);
    switch (frame.op) {
      case 'msg':
        this.dispatch({ topic: frame.topic, seq: frame.seq, time: frame.time, data: frame.data, binary: null });
        break;
      case 'gap':
        for (const sub of this.covering(frame.topic)) sub.gap(frame);
        this.dispatchEvent(new CustomEvent('gap', { detail: frame }));
        break;
      case 'subscribed': {
        const sub = this.pendingSubs.get(frame.id);
        this.pendingSubs.delete(frame.id);
        if (sub && !sub.closed) sub.subscribed(frame.epoch);
        break;
      }
      case 'ack': {
        const item = this.pendingPublishes.get(frame.id);
        this.pendingPublishes.delete(frame.id);
        item?.resolve(frame.seq);
        break;
      }
      case 'error': {
        const error = new SwitchboardError(frame.code, frame.message);
        const sub = this.pendingSubs.get(frame.id);
        const item = this.pendingPublishes.get(frame.id);
        this.pendingSubs.delete(frame.id);
        this.pendingPublishes.delete(frame.id);
        if (sub && frame.code !== 'unavailable') sub.fail(error);
        item?.reject(error);
        if (!sub && !item) this.dispatchEvent(new CustomEvent('error', { detail: error }));
        break;
      }
      default:
        break;
    }
  }

  dispatch(message) {
    const covering = this.covering(message.topic);
    for (const sub of covering) sub.message(message, covering.length > 1);
  }

  covering(topic) {
    return [...this.subscriptions].filter((sub) => topicMatches(sub.pattern, topic));
  }

  /**
   * Subscribes to a topic or pattern. `from`: 'latest' (default), {last: N}, {seq: N}.
   * With `onMessage` it is called with each message; without, iterate the subscription.
   */
  subscribe(pattern, options = {}, onMessage = undefined) {
    const stored = this.load(pattern);
    const sub = new Subscription(this, pattern, options.from ?? 'latest', onMessage, stored);
    this.subscriptions.add(sub);
    if (this.state === 'connected') this.sendSub(sub);
    return sub;
  }

  forget(sub) {
    if (!this.subscriptions.delete(sub)) return;
    const still = [...this.subscriptions].some((other) => other.pattern === sub.pattern);
    if (!still && this.state === 'connected') {
      this.socket.send(JSON.stringify({ op: 'unsub', topic: sub.pattern, id: `u${this.nextID++}` }));
    }
  }

  /**
   * Publishes `data` (any JSON value, or an ArrayBuffer / typed array sent as a binary
   * frame). With `{ack: true}` the promise resolves to the message's seq once the broker
   * sequenced it (stored, for a retained topic); otherwise once it is written to the socket.
   * While disconnected, publishes wait for the next connection (at most `publishQueueLimit`).
   */
  publish(topic, data, { ack = false } = {}) {
    return new Promise((resolve, reject) => {
      if (this.state === 'closed') {
        reject(new SwitchboardError('closed', 'the client is closed'));
        return;
      }
      const item = { topic, data, id: ack ? `p${this.nextID++}` : null, resolve, reject };
      if (this.state !== 'connected') {
        if (this.outbox.length >= this.publishQueueLimit) {
          reject(new SwitchboardError('queueFull', `${this.publishQueueLimit} publishes are waiting already`));
          return;
        }
        this.outbox.push(item);
        return;
      }
      this.sendPublish(item);
    });
  }

  sendPublish(item) {
    const { topic, data, id } = item;
    if (id) this.pendingPublishes.set(id, item);
    if (data instanceof ArrayBuffer || ArrayBuffer.isView(data)) {
      this.socket.send(binaryPublish(topic, id, data));
    } else {
      const request = id ? { op: 'pub', topic, id, data } : { op: 'pub', topic, data };
      this.socket.send(JSON.stringify(request));
    }
    if (!id) item.resolve(undefined);
  }

  persistKey(pattern) {
    return this.options.persist ? `switchboard:${this.options.persist}:${pattern}` : null;
  }

  load(pattern) {
    const key = this.persistKey(pattern);
    if (!key) return null;
    try {
      return JSON.parse(globalThis.localStorage.getItem(key) ?? 'null');
    } catch {
      return null;
    }
  }

  /** Writes a subscription's positions to localStorage, at most every 200 ms. */
  persist(sub) {
    if (!this.persistKey(sub.pattern)) return;
    this.dirty ??= new Set();
    this.dirty.add(sub);
    if (this.saveTimer) return;
    this.saveTimer = setTimeout(() => this.flush(), 200);
  }

  flush() {
    clearTimeout(this.saveTimer);
    this.saveTimer = null;
    for (const sub of this.dirty ?? []) {
      const record = { epoch: sub.epoch, positions: Object.fromEntries(sub.positions) };
      globalThis.localStorage.setItem(this.persistKey(sub.pattern), JSON.stringify(record));
    }
    this.dirty?.clear();
  }

  /** Ends every subscription, fails waiting publishes and closes the connection. */
  close(reason = 'closed by the application') {
    if (this.state === 'closed') return;
    this.flush();
    clearTimeout(this.timer);
    globalThis.removeEventListener?.('online', this.wake);
    globalThis.document?.removeEventListener('visibilitychange', this.onVisibility);
    const socket = this.socket;
    this.setState('closed', { reason });
    for (const sub of [...this.subscriptions]) sub.end(null);
    for (const item of this.outbox) item.reject(new SwitchboardError('closed', reason));
    this.outbox = [];
    for (const [, item] of this.pendingPublishes) item.reject(new SwitchboardError('closed', reason));
    this.pendingPublishes.clear();
    socket?.close(1000);
    this.socket = null;
  }
}

/** A binary publish frame: 0x11, topic, id, payload (docs/protocol.md). */
function binaryPublish(topic, id, data) {
  const payload = data instanceof ArrayBuffer ? new Uint8Array(data) : new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  const t = encoder.encode(topic);
  const i = encoder.encode(id ?? '');
  const frame = new Uint8Array(3 + t.length + i.length + payload.length);
  frame[0] = 0x11;
  frame[1] = t.length;
  frame.set(t, 2);
  frame[2 + t.length] = i.length;
  frame.set(i, 3 + t.length);
  frame.set(payload, 3 + t.length + i.length);
  return frame;
}

/** A binary message frame: 0x12, topic, seq, time, payload. */
function parseBinaryMessage(buffer) {
  const view = new DataView(buffer);
  const length = view.getUint8(1);
  const topic = decoder.decode(new Uint8Array(buffer, 2, length));
  const seq = Number(view.getBigUint64(2 + length));
  const time = Number(view.getBigInt64(10 + length));
  return { topic, seq, time, data: null, binary: buffer.slice(18 + length) };
}
