// Type declarations of the rtdelivery browser client: the exports of rtdelivery.mjs (the npm
// package "rtdelivery") and the `RTDelivery` global that the classic script rtdelivery.js sets.

export type TransportName = "ws" | "sse" | "longpoll" | "poll";

export type ClientState = "idle" | "connecting" | "open" | "reconnecting" | "offline" | "closed";

/** pending: asked, not confirmed yet · live: confirmed · refused: by the server · ended: left. */
export type SubscriptionState = "pending" | "live" | "refused" | "ended";

/** An event as delivered: `id` is a cursor positioned at this event in its topic. */
export interface RTEvent<T = unknown> {
  id: string;
  topic: string;
  seq: number;
  type: string;
  data: T;
  /** Publish time, epoch milliseconds. */
  time: number;
}

export interface ClientOptions {
  /** Where rtdelivery's URLs are mounted (default "/rt/"). */
  url?: string;
  /** Candidate transports in fallback order (default all four); one entry pins it. */
  transports?: TransportName[] | TransportName;
  /** WebSocket URL (default: `url + "ws"` with ws:/wss:). */
  wsUrl?: string;
  /** Short polling interval, ms (default 5000). */
  pollInterval?: number;
  /** Long-poll hold asked of the server, seconds (default 25; the server caps it). */
  longpollTimeout?: number;
  /** A transport that hasn't opened within this many ms counts as failed (default 10000). */
  openTimeout?: number;
  /** WebSocket ping interval, ms (default 25000; 0 disables). */
  pingInterval?: number;
  /**
   * A WebSocket subscribe or ping not answered within this many ms closes the socket and
   * retries; twice before any answer, the next transport is tried (default 5000).
   */
  livenessTimeout?: number;
  /** The old name of livenessTimeout. */
  pongTimeout?: number;
  /** A new WebSocket's first answer (its first subscribe or ping) is awaited this long, ms (default 8000). */
  firstAnswerTimeout?: number;
  /** Open on a fallback transport: the first one is tried again after this many ms (default 300000; 0: never). */
  upgradeAfter?: number;
  /** A publish not sent within this many ms is rejected with "outbox_expired" (default 60000). */
  outboxTimeout?: number;
  /** watchPresence() on poll/long poll: how often the snapshot is asked for, ms (default 15000). */
  presenceInterval?: number;
  /**
   * One connection for all tabs of this origin and url: a leader tab, failover (docs/client.md).
   * The object is then a shared client (another class; `instanceof Client` is still true).
   */
  shared?: boolean;
  /** Tab sharing: the group of tabs that share one connection (default: origin + url). */
  sharedName?: string;
  /** Timeout of a WebSocket publish/presence request, ms (default 15000). */
  requestTimeout?: number;
  /** SSE, long poll, poll: subscription changes this close together (ms) share one (re)open. Default 100. */
  batchDelay?: number;
  /** Reconnect backoff with full jitter: random in [0, min(max, base * 2^attempt)) ms. */
  backoff?: { base?: number; max?: number };
  /** Failed reopens of the transport that worked before the whole list is tried again (5). */
  maxProvenFailures?: number;
  /** Cookie holding Django's CSRF token (default "csrftoken"). */
  csrfCookieName?: string;
  /** A fetch implementation (default globalThis.fetch). */
  fetch?: typeof fetch;
  /**
   * Gives a connection token (rtdelivery.tokens.connection_token(), from a view of your
   * project). Called before the first connection and again whenever the server says
   * `token_expired` (mid-stream or as a 401); the client then resumes from its cursors,
   * losing nothing. The token is sent as `Authorization: Bearer` on HTTP requests and as
   * `access_token=` on the WebSocket URL.
   */
  getToken?: () => string | Promise<string>;
}

export interface SubscribeOptions {
  /** Resume after this cursor (an event's `id`, or a cursor from any transport). */
  since?: string;
  /** Called with the subscription's new state on every change. */
  onState?: (state: SubscriptionState, subscription: Subscription) => void;
  /** Called when the server refuses this topic (the client's other topics go on). */
  onError?: (error: RTDeliveryError, subscription: Subscription) => void;
}

export interface Subscription {
  readonly topic: string;
  readonly state: SubscriptionState;
  /** Why the server refused the topic (`error.topic` names it), else null. */
  readonly error: RTDeliveryError | null;
  /** Removes this handler; the topic is left when its last handler goes. */
  unsubscribe(): void;
}

export interface PublishOptions {
  /** The event type (default "message"). */
  type?: string;
  /** Idempotency key, 1-128 of [A-Za-z0-9_.:-] (default: crypto.randomUUID()). */
  key?: string;
}

export interface PublishResult {
  topic: string;
  seq: number;
  id: string;
  /** The key was published before: these are that first publish's seq and id. */
  duplicate?: boolean;
}

export interface OutboxEntry {
  key: string;
  topic: string;
  data: unknown;
  type: string;
  state: "queued" | "sending";
}

export interface PresenceUser {
  id: string;
  name: string;
  connections: number;
}

export interface PresenceSnapshot {
  topic: string;
  count: number;
  anonymous: number;
  users: PresenceUser[];
}

/** A join or leave (WebSocket `presence` frame, SSE `rt.presence`). */
export interface PresenceChange {
  topic: string;
  action: "join" | "leave";
  user: { id: string | null; name: string | null };
  connection: string;
  time: number;
}

export interface PresenceWatch {
  readonly topic: string;
  /** The latest snapshot, or null before the first answer. */
  readonly snapshot: PresenceSnapshot | null;
  stop(): void;
}

export interface HistoryPage<T = unknown> {
  events: RTEvent<T>[];
  /** Where the next page (or a subscription) starts. */
  cursor: string;
  /** False when the cursor was older than the retained history. */
  recovered: boolean;
}

export interface StateEvents {
  connecting: { transport: TransportName; attempt: number };
  open: { transport: TransportName };
  /** The transport in use changed (first open, or after a fallback). */
  transport: TransportName;
  /** A topic is live on the connection (sent on every (re)open). */
  subscribed: { topic: string; transport: TransportName; recovered: boolean };
  /** A resume from a cursor found everything it missed. */
  recovered: { topic: string; transport: TransportName };
  /** Events of this topic were lost (history no longer covers the cursor): reload its state. */
  reset: { topic: string; transport: TransportName };
  presence: PresenceChange;
  disconnected: {
    /** null when getToken() failed before a transport was tried. */
    transport: TransportName | null;
    code?: number;
    reason?: string;
    /** ms until the next attempt (null: waiting for the browser to come back online). */
    delay: number | null;
    next?: TransportName;
  };
  error: RTDeliveryError | Error;
  closed: { reason: string };
  /**
   * The server ended this user's access ("logged_out", "disconnected", a reason given to
   * rtdelivery.disconnect(), or "token_expired" without getToken): the client does not
   * reconnect until connect() is called (e.g. after the user logged in again).
   */
  ended: { transport: TransportName; reason: string };
  /** The server ended the subscription to `topic` (rtdelivery.unsubscribe()); forgotten. */
  unsubscribed: { topic: string; reason: string };
  /** client.state changed. */
  state: { state: ClientState; previous: ClientState; transport: TransportName | null };
  /** A subscription's state changed (refused: `error` says why). */
  subscription: { topic: string; state: SubscriptionState; error: RTDeliveryError | null };
  /** The outbox changed (a publish queued, sent, answered, expired). */
  outbox: { size: number };
  /** Tab sharing: the leader tab changed (`self`: this tab runs the connection now). */
  leader: { leader: string; self: boolean };
}

export declare class RTDeliveryError extends Error {
  constructor(message: string, code?: string, status?: number, detail?: unknown);
  /** The server's error code ("forbidden", "invalid_topic", ...) or a client one. */
  code: string;
  /** HTTP status when the error came from an HTTP answer, else 0. */
  status: number;
  detail?: unknown;
  /** The topic a refusal is about, else null. */
  topic: string | null;
}

export declare class Client {
  constructor(options?: ClientOptions);
  readonly state: ClientState;
  readonly transport: TransportName | null;
  /** The browser is online and the connection open. */
  readonly online: boolean;
  /** Publishes waiting to be sent or answered, oldest first. */
  readonly outbox: OutboxEntry[];
  /**
   * This client's id (`client=` on poll, long poll and SSE requests, for presence). A shared
   * client (`shared: true`) has the leader's, null until the leader's first snapshot.
   */
  readonly clientId: string | null;
  /** Tab sharing only: whether this tab runs the connection, this tab's id, the leader's. */
  readonly role?: "leader" | "follower";
  readonly tabId?: string;
  readonly leader?: string | null;
  readonly stats: {
    connects: number;
    /** HTTP requests made (poll, long poll, SSE, history, publish). */
    requests: number;
    /** Poll and long-poll answers that carried no event. */
    emptyResponses: number;
    /** Characters received: response bodies, SSE chunks, WebSocket frames. */
    bytesReceived: number;
    delivered: number;
    duplicates: number;
    resets: number;
  };
  on<K extends keyof StateEvents>(name: K, fn: (data: StateEvents[K]) => void): () => void;
  off<K extends keyof StateEvents>(name: K, fn: (data: StateEvents[K]) => void): void;
  subscribe<T = unknown>(
    topic: string,
    onEvent: (event: RTEvent<T>) => void,
    options?: SubscribeOptions,
  ): Subscription;
  unsubscribe(topic: string): void;
  /** The cursor `topic` would resume from. */
  cursor(topic: string): string | null;
  topics(): string[];
  publish(topic: string, data: unknown, options?: PublishOptions): Promise<PublishResult>;
  presence(topic: string): Promise<PresenceSnapshot>;
  watchPresence(topic: string, onChange: (snapshot: PresenceSnapshot) => void): PresenceWatch;
  history<T = unknown>(topic: string, options?: { limit?: number; cursor?: string }): Promise<HistoryPage<T>>;
  connect(): void;
  close(): void;
}

/** Full jitter: random in [0, min(max, base * 2^attempt)) ms. */
export declare function backoffDelay(base: number, max: number, attempt: number): number;

/** The client's version (the Python package's). */
export declare const VERSION: string;
/** The transport names in the default fallback order. */
export declare const TRANSPORTS: TransportName[];

declare const RTDelivery: {
  VERSION: string;
  TRANSPORTS: TransportName[];
  Client: typeof Client;
  RTDeliveryError: typeof RTDeliveryError;
  backoffDelay: typeof backoffDelay;
};

// rtdelivery.mjs: the names above, and the namespace as its default export.
export default RTDelivery;

declare global {
  // eslint-disable-next-line no-var
  var RTDelivery: typeof import("./rtdelivery").default;
}
