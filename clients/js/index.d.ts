/** The gateway's client SDK (PROTOCOL.md v1.1). Zero runtime dependencies. */

export type State = "connecting" | "connected" | "disconnected" | "closed";
export type Transport = "websocket" | "sse" | "auto";
export type Surface = "web" | "ios" | "android" | "desktop" | "teams" | "outlook" | "other";
export type MarkStatus = "seen" | "read" | "unread" | "archived";

/** A log event as on the wire: `type`, `seq` and the type's fields. */
export interface LogEvent {
  type: string;
  seq: number;
  [field: string]: unknown;
}

/** A turn as assembled so far: `text` is the whole text, `status` `streaming` until its end. */
export interface Turn {
  turnId: string;
  conversationId: string;
  text: string;
  status: "streaming" | "completed" | "cancelled" | "failed";
  nextIndex: number;
}

export interface StorageLike {
  getItem(key: string): string | null;
  setItem(key: string, value: string): void;
}

export interface GatewayClientOptions {
  /** The gateway's base URL (`https://host`); `/v1/ws`, `/v1/sse` and the REST paths follow. */
  url: string;
  /** A fresh JWT of the user: called at connect, before `exp`, and after a 4001. */
  getToken: () => string | Promise<string>;
  transport?: Transport;
  deviceId?: string;
  surface?: Surface;
  WebSocket?: unknown;
  EventSource?: unknown;
  fetch?: typeof fetch;
  /** Where the resume position is kept (default: `localStorage` when there is one). */
  storage?: StorageLike | null;
}

export interface Events {
  state: State;
  event: LogEvent;
  turn: Turn;
  notification: LogEvent;
  task: LogEvent;
  /** The log could not resume: reload what the app shows (open turns re-sync themselves). */
  reset: { epoch: string; seq: number };
  error: Error & { code?: string };
}

export interface TurnSnapshot {
  turn_id: string;
  conversation_id: string;
  status: Turn["status"];
  text: string;
  next_index: number;
  as_of_seq: number;
}

export class GatewayClient {
  constructor(options: GatewayClientOptions);
  readonly state: State;
  readonly deviceId: string;
  /** Resolves at the first `connected`. */
  connect(): Promise<void>;
  /** Stops reconnecting and emits `closed`. */
  close(): void;
  on<K extends keyof Events>(name: K, fn: (value: Events[K]) => void): this;
  off<K extends keyof Events>(name: K, fn: (value: Events[K]) => void): this;
  syncTurn(turnId: string): Promise<TurnSnapshot>;
  cancelTurn(turnId: string): Promise<void>;
  markNotifications(ids: string[] | "all", status: MarkStatus): Promise<{ updated: number; unread_count: number; unseen_count: number }>;
  presence(): Promise<Array<{ conn_id: string; device_id: string; surface: string; transport: "ws" | "sse"; node_id: string; connected_at: string }>>;
  history(conversationId: string, page?: { limit?: number; before?: string }): Promise<{ turns: unknown[]; next: string | null }>;
  inbox(page?: { status?: string; limit?: number; before?: string }): Promise<{ notifications: unknown[]; next: string | null; unread_count: number; unseen_count: number }>;
  tasks(page?: { state?: "active" | "terminal" | "all"; contextId?: string; limit?: number; before?: string }): Promise<{ tasks: unknown[]; next: string | null }>;
}

/** Full-jitter exponential backoff, about 0.5 s to 20 s. */
export class Backoff {
  constructor(random?: () => number);
  next(): number;
  reset(): void;
}

/** Milliseconds until a token should be refreshed (null: it has no `exp`). */
export function refreshIn(token: string, nowMs: number, obtainedMs?: number): number | null;
