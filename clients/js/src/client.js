// GatewayClient: one connection at a time to the gateway, every log event emitted once and in
// seq order across reconnects (resume from `(epoch, seq)`, kept in `storage`), turns assembled,
// the token refreshed before it expires, reconnects with full-jitter backoff.

import { Backoff } from "./backoff.js";
import { claims, refreshIn } from "./token.js";
import { openSse, openWebSocket } from "./transport.js";
import { Turns } from "./turns.js";

const STATES = new Set(["connecting", "connected", "disconnected", "closed"]);
const NAMES = ["state", "event", "turn", "notification", "task", "reset", "error"];

function freshId() {
  const r = globalThis.crypto?.randomUUID?.() ?? String(Math.random()).slice(2);
  return "d-" + r.replace(/-/g, "").slice(0, 16);
}

export class GatewayClient {
  constructor(opts) {
    if (!opts || typeof opts.url !== "string") throw new TypeError("GatewayClient needs {url}");
    if (typeof opts.getToken !== "function") throw new TypeError("GatewayClient needs {getToken}");
    this.url = opts.url.replace(/\/+$/, "");
    this.getToken = opts.getToken;
    this.transport = opts.transport ?? "auto";
    this.surface = opts.surface ?? "web";
    this.WebSocket = opts.WebSocket ?? globalThis.WebSocket;
    this.EventSource = opts.EventSource ?? globalThis.EventSource;
    this.fetch = opts.fetch ?? globalThis.fetch?.bind(globalThis);
    this.storage = opts.storage ?? globalThis.localStorage ?? null;
    this.key = `gateway:${this.url}:${opts.deviceId ?? ""}`;
    this.deviceId = opts.deviceId ?? this.stored()?.deviceId ?? freshId();
    this.random = opts.random ?? Math.random;
    this.backoff = new Backoff(this.random);
    this.listeners = new Map(NAMES.map((n) => [n, new Set()]));
    this.turns = new Turns();
    this.state = "closed";
    const pos = this.stored();
    /** Where this client is in its user's log (null: nowhere yet). */
    this.position = pos?.epoch ? { epoch: pos.epoch, seq: pos.seq } : null;
    this.conn = null;
    this.token = null;
    this.timers = new Set();
    this.refreshing = null;
    this.everConnected = false;
    this.stopped = true;
  }

  on(name, fn) {
    this.listeners.get(name)?.add(fn);
    return this;
  }

  off(name, fn) {
    this.listeners.get(name)?.delete(fn);
    return this;
  }

  emit(name, value) {
    for (const fn of [...(this.listeners.get(name) ?? [])]) {
      try {
        fn(value);
      } catch (e) {
        if (name !== "error") this.emit("error", e);
      }
    }
  }

  setState(s) {
    if (!STATES.has(s) || this.state === s) return;
    this.state = s;
    this.emit("state", s);
  }

  stored() {
    try {
      const v = this.storage?.getItem(this.key);
      return v ? JSON.parse(v) : null;
    } catch {
      return null;
    }
  }

  save() {
    try {
      this.storage?.setItem(this.key, JSON.stringify({ deviceId: this.deviceId, ...this.position }));
    } catch { /* storage full or gone: resume from memory only */ }
  }

  later(ms, fn) {
    const t = setTimeout(() => {
      this.timers.delete(t);
      fn();
    }, ms);
    this.timers.add(t);
    return t;
  }

  clearTimers() {
    for (const t of this.timers) clearTimeout(t);
    this.timers.clear();
  }

  useSse() {
    if (this.transport === "sse") return true;
    if (this.transport === "websocket") return false;
    return typeof this.WebSocket !== "function" && typeof this.EventSource === "function";
  }

  /** Connects; resolves at the first `connected`. */
  connect() {
    if (!this.stopped) return this.firstConnected ?? Promise.resolve();
    this.stopped = false;
    this.firstConnected = new Promise((resolve) => { this.resolveFirst = resolve; });
    this.open();
    return this.firstConnected;
  }

  /** Stops for good: no more reconnects; emits `closed`. */
  close() {
    this.stopped = true;
    this.clearTimers();
    this.conn?.close();
    this.conn = null;
    this.setState("closed");
  }

  async freshToken() {
    const t = await this.getToken();
    if (typeof t !== "string" || !t) throw new Error("getToken() gave no token");
    this.token = t;
    this.tokenAt = Date.now();
    return t;
  }

  async open() {
    if (this.stopped) return;
    this.setState("connecting");
    let token;
    try {
      token = await this.freshToken();
    } catch (e) {
      this.emit("error", e);
      return this.retry();
    }
    if (this.stopped) return;
    const sse = this.useSse();
    const params = { access_token: token, device_id: this.deviceId, surface: this.surface };
    if (this.position) {
      if (sse) params.last_event_id = `${this.position.epoch}:${this.position.seq}`;
      else Object.assign(params, { epoch: this.position.epoch, after: this.position.seq });
    }
    const onFrame = (f) => this.frame(f, conn);
    const onClose = (code) => this.lost(conn, code);
    const conn = sse
      ? openSse(this.EventSource, this.url, params, onFrame, onClose)
      : openWebSocket(this.WebSocket, this.url, params, onFrame, onClose);
    conn.sse = sse;
    this.conn = conn;
  }

  /** A connection ended: reconnect (at once for a 4001 with a fresh token), unless closed. */
  lost(conn, code) {
    if (conn !== this.conn) return;
    this.conn = null;
    this.clearTimers();
    if (this.stopped) return;
    this.setState("disconnected");
    if (conn.drainAfter !== undefined) return this.later(conn.drainAfter, () => this.open());
    if (code === 4001) return this.later(0, () => this.open());
    this.retry();
  }

  retry() {
    if (this.stopped) return;
    this.later(this.backoff.next(), () => this.open());
  }

  frame(f, conn) {
    if (conn !== this.conn || !f || typeof f.type !== "string") return;
    if (f.type === "hello") return this.hello(f, conn);
    // Log events carry a seq; control frames (hello aside) never do.
    if (typeof f.seq === "number") return this.event(f, conn);
    switch (f.type) {
      case "reconnect":
        conn.drainAfter = Math.max(0, Number(f.after_ms) || 0);
        return;
      case "turn.snapshot":
      case "auth.refreshed":
        this.pending?.get(f.ref)?.resolve(f);
        return;
      case "error":
        if (f.ref !== undefined && this.pending?.has(f.ref)) return this.pending.get(f.ref).reject(Object.assign(new Error(f.message), { code: f.code }));
        return this.emit("error", Object.assign(new Error(f.message), { code: f.code }));
      default:
        if (f.ref !== undefined) this.pending?.get(f.ref)?.resolve(f);
    }
  }

  hello(h, conn) {
    const had = this.position;
    const reset = this.everConnected && !(h.resumed && had && had.epoch === h.epoch);
    if (!h.resumed || !had || had.epoch !== h.epoch) this.position = { epoch: h.epoch, seq: h.seq };
    this.save();
    this.userId = h.user_id;
    this.everConnected = true;
    this.backoff.reset();
    this.setState("connected");
    this.scheduleRefresh(conn);
    if (reset) {
      this.emit("reset", { epoch: h.epoch, seq: h.seq });
      for (const id of this.turns.open()) {
        this.turns.syncing(id);
        this.resync(id);
      }
    }
    this.resolveFirst?.();
    this.resolveFirst = null;
  }

  event(ev, conn) {
    const pos = this.position;
    if (pos && ev.seq <= pos.seq) return; // had it (a replay overlapping what came live)
    if (pos && ev.seq !== pos.seq + 1) {
      // A gap the server should never leave: reconnect and resume from what we have.
      conn.close();
      return this.lost(conn, null);
    }
    this.position = { epoch: pos?.epoch ?? "", seq: ev.seq };
    this.save();
    this.emit("event", ev);
    if (ev.type === "notification" || ev.type.startsWith("notification.")) this.emit("notification", ev);
    if (ev.type.startsWith("task.")) this.emit("task", ev);
    if (ev.type.startsWith("turn.")) {
      const r = this.turns.apply(ev);
      if (r.changed) this.emit("turn", r.changed);
      if (r.sync) this.resync(r.sync);
      this.turns.trim();
    }
  }

  snapshot(s) {
    this.emit("turn", this.turns.snapshot(s));
  }

  /** A turn's text so far: `turn.sync` over WebSocket, the v1.1 HTTP snapshot over SSE. */
  async resync(id) {
    try {
      const s = await this.syncTurn(id);
      if (s && s.turn_id) this.snapshot(s);
    } catch (e) {
      const v = this.turns.failed(id);
      if (v) this.emit("turn", v);
      this.emit("error", e);
    }
  }

  scheduleRefresh(conn) {
    const ms = refreshIn(this.token, Date.now(), this.tokenAt);
    if (ms === null) return;
    this.later(ms, () => this.refresh(conn));
  }

  /** One refresh in flight at a time; over SSE a reconnect with the fresh token. */
  refresh(conn) {
    if (this.refreshing || conn !== this.conn) return this.refreshing;
    this.refreshing = (async () => {
      try {
        const token = await this.freshToken();
        if (conn !== this.conn) return;
        if (conn.sse) {
          conn.close();
          this.conn = null;
          return this.open();
        }
        await this.request({ type: "auth.refresh", access_token: token });
        this.scheduleRefresh(conn);
      } catch (e) {
        this.emit("error", e);
      } finally {
        this.refreshing = null;
      }
    })();
    return this.refreshing;
  }

  /** A client frame with a `ref`, answered by the frame that echoes it. */
  request(frame, timeoutMs = 10_000) {
    const conn = this.conn;
    if (!conn || conn.sse) return Promise.reject(new Error("not connected over WebSocket"));
    this.pending ??= new Map();
    this.nextRef = (this.nextRef ?? 0) + 1;
    const ref = `r${this.nextRef}`;
    return new Promise((resolve, reject) => {
      const t = setTimeout(() => {
        this.pending.delete(ref);
        reject(new Error(`${frame.type}: no answer`));
      }, timeoutMs);
      const settle = (fn) => (v) => {
        clearTimeout(t);
        this.pending.delete(ref);
        fn(v);
      };
      this.pending.set(ref, { resolve: settle(resolve), reject: settle(reject) });
      conn.send({ ...frame, ref });
    });
  }

  async http(method, path, body) {
    const token = this.token ?? (await this.freshToken());
    const r = await this.fetch(this.url + path, {
      method,
      headers: { authorization: `Bearer ${token}`, ...(body ? { "content-type": "application/json" } : {}) },
      body: body ? JSON.stringify(body) : undefined,
    });
    const v = await r.json().catch(() => null);
    if (!r.ok) throw Object.assign(new Error(v?.error?.message ?? `HTTP ${r.status}`), { code: v?.error?.code, status: r.status });
    return v;
  }

  /** The turn's text so far (`turn.snapshot` fields). */
  syncTurn(id) {
    if (this.conn && !this.conn.sse) return this.request({ type: "turn.sync", turn_id: id });
    return this.http("GET", `/v1/turns/${encodeURIComponent(id)}?snapshot=true`);
  }

  /** Cancels a streaming turn (its `turn.end` follows as an event). */
  async cancelTurn(id) {
    if (this.conn && !this.conn.sse) {
      this.conn.send({ type: "turn.cancel", turn_id: id });
      return;
    }
    throw new Error("cancelTurn needs the WebSocket transport");
  }

  /** The user this client is (from `hello`, else from its token). */
  user() {
    return encodeURIComponent(this.userId ?? claims(this.token)?.sub ?? "");
  }

  /** Marks notifications (`ids` or "all") `seen`, `read`, `unread` or `archived`. */
  markNotifications(ids, status) {
    const body = ids === "all" ? { all: true, status } : { ids, status };
    return this.http("POST", `/v1/users/${this.user()}/notifications/mark`, body);
  }

  /** The user's endpoints on every node. */
  async presence() {
    const v = await this.http("GET", `/v1/users/${this.user()}/presence`);
    return v.endpoints;
  }

  history(conversationId, { limit, before } = {}) {
    const q = new URLSearchParams();
    if (limit) q.set("limit", String(limit));
    if (before) q.set("before", before);
    return this.http("GET", `/v1/conversations/${encodeURIComponent(conversationId)}/turns?${q}`);
  }

  inbox({ status, limit, before } = {}) {
    const q = new URLSearchParams();
    if (status) q.set("status", status);
    if (limit) q.set("limit", String(limit));
    if (before) q.set("before", before);
    return this.http("GET", `/v1/users/${this.user()}/notifications?${q}`);
  }

  tasks({ state, contextId, limit, before } = {}) {
    const q = new URLSearchParams();
    if (state) q.set("state", state);
    if (contextId) q.set("context_id", contextId);
    if (limit) q.set("limit", String(limit));
    if (before) q.set("before", before);
    return this.http("GET", `/v1/tasks?${q}`);
  }
}
