// TypeScript declarations of switchboard.js (served beside it at /client/switchboard.d.ts).

export interface Backoff {
  /** Milliseconds; the first wait is uniform(0, initial). Default 500. */
  initial: number;
  /** Milliseconds; no wait is longer. Default 20000. */
  max: number;
}

export const defaultBackoff: Readonly<Backoff>;
/** The wait before reconnect attempt `attempt` (0 first): uniform(0, min(max, initial * 2^attempt)). */
export function backoffDelay(attempt: number, backoff?: Backoff, random?: () => number): number;
/** NATS-style matching: `*` one segment, `>` one or more trailing segments. */
export function topicMatches(pattern: string, topic: string): boolean;

export class SwitchboardError extends Error {
  /** The broker's stable code (`forbidden`, `bad_topic`, `too_large`, `unavailable`, …) or
   * `connectionLost`, `closed`, `queueFull`. */
  readonly code: string;
}

export type From = 'latest' | { last: number } | { seq: number };

export interface Message {
  type: 'message';
  topic: string;
  seq: number;
  /** Publish time, unix milliseconds (broker clock). */
  time: number;
  /** The published JSON value; null for a binary message. */
  data: unknown;
  /** A binary message's payload; null for a JSON one. */
  binary: ArrayBuffer | null;
}

export interface Gap {
  type: 'gap';
  topic: string;
  from: number;
  to: number;
  /** `missed`: the broker announced it (not retained, pruned, dropped); `unannounced`: seqs
   * jumped; `historyLost`: the broker's database was replaced (positions restart at 0). */
  reason: 'missed' | 'unannounced' | 'historyLost';
}

export type SubscriptionEvent = Message | Gap;

export interface SwitchboardOptions {
  /** Sent as `?token=` (browsers cannot set headers on a WebSocket). */
  token?: string;
  /** Asked before every connection attempt (short-lived tokens); wins over `token`. */
  getToken?: () => Promise<string | null | undefined>;
  /** Keep positions in localStorage under this name, so a reload resumes. */
  persist?: string;
  backoff?: Backoff;
  /** Publishes waiting for a connection; past it `queueFull`. Default 1000. */
  publishQueueLimit?: number;
  random?: () => number;
}

export type ConnectionState = 'connecting' | 'connected' | 'disconnected' | 'closed';

export interface StateDetail {
  state: ConnectionState;
  /** The close code, when disconnected by a close. */
  code?: number;
  reason?: string;
  /** Milliseconds until the next attempt, when disconnected. */
  retryIn?: number;
}

export class Subscription extends EventTarget implements AsyncIterable<SubscriptionEvent> {
  readonly pattern: string;
  /** Per topic, the last seq handed to the application (a message's seq or a gap's `to`). */
  readonly positions: Map<string, number>;
  /** The broker history the positions count in. */
  readonly epoch: string | null;
  /** Resolves once the broker answered the first `subscribed`; rejects on a refusal. */
  readonly ready: Promise<Subscription>;
  readonly closed: boolean;
  close(): void;
  [Symbol.asyncIterator](): AsyncIterator<SubscriptionEvent>;
  addEventListener(type: 'gap', listener: (event: CustomEvent<Gap>) => void): void;
}

export class Switchboard extends EventTarget {
  constructor(url: string | URL, options?: SwitchboardOptions);
  readonly state: ConnectionState;
  subscribe(pattern: string, options?: { from?: From }, onMessage?: (message: Message) => void): Subscription;
  publish(topic: string, data: unknown, options?: { ack?: false }): Promise<undefined>;
  publish(topic: string, data: unknown, options: { ack: true }): Promise<number>;
  /** Skips the backoff wait (done by itself on `online` and when the page becomes visible). */
  reconnectNow(): void;
  close(reason?: string): void;
  addEventListener(type: 'state', listener: (event: CustomEvent<StateDetail>) => void): void;
  addEventListener(type: 'gap', listener: (event: CustomEvent<{ topic: string; from: number; to: number }>) => void): void;
  addEventListener(type: 'error', listener: (event: CustomEvent<SwitchboardError>) => void): void;
}
