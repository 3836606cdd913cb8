// The SDK's rules without a server: backoff, refresh timing, turn assembly, and the client's
// state machine over a fake WebSocket with fake timers.
import assert from "node:assert/strict";
import { mock, test } from "node:test";

import { Backoff, GatewayClient, refreshIn } from "../src/index.js";
import { Turns } from "../src/turns.js";

const flush = () => new Promise((r) => setImmediate(r));

function jwt(claims) {
  const b = (o) => Buffer.from(JSON.stringify(o)).toString("base64url");
  return `${b({ alg: "HS256" })}.${b(claims)}.sig`;
}

test("backoff is full-jitter between 0.5 s and 20 s and starts over after a reset", () => {
  const b = new Backoff(() => 1);
  const caps = Array.from({ length: 10 }, () => b.next());
  assert.deepEqual(caps.slice(0, 4), [500, 1000, 2000, 4000]);
  assert.equal(caps[9], 20_000);
  b.reset();
  assert.equal(b.next(), 500);
  const low = new Backoff(() => 0);
  low.next();
  assert.equal(low.next(), 500, "never under the floor");
});

test("a token is refreshed at the earlier of exp - 30 s and 80 % of its life", () => {
  const now = 1_000_000_000_000;
  const s = now / 1000;
  assert.equal(refreshIn(jwt({ iat: s, exp: s + 3600 }), now), 0.8 * 3600_000);
  assert.equal(refreshIn(jwt({ iat: s, exp: s + 100 }), now), 70_000, "exp - 30 s comes first");
  assert.equal(refreshIn(jwt({ exp: s + 100 }), now + 10_000, now), 60_000, "life from when it was got");
  assert.equal(refreshIn("not a jwt", now), null);
});

test("turns: deltas by index once, a join mid-turn syncs, waiting deltas follow the snapshot", () => {
  const t = new Turns();
  t.apply({ type: "turn.start", turn_id: "a", conversation_id: "c" });
  assert.equal(t.apply({ type: "turn.delta", turn_id: "a", index: 0, text: "He" }).changed.text, "He");
  assert.deepEqual(t.apply({ type: "turn.delta", turn_id: "a", index: 0, text: "He" }), {}, "a repeat");
  const mid = t.apply({ type: "turn.delta", turn_id: "b", index: 5, text: "x" });
  assert.equal(mid.sync, "b");
  t.apply({ type: "turn.delta", turn_id: "b", index: 6, text: "y" });
  t.apply({ type: "turn.end", turn_id: "b", status: "completed" });
  const v = t.snapshot({ turn_id: "b", conversation_id: "c", status: "streaming", text: "01234+", next_index: 6 });
  assert.deepEqual(v, { turnId: "b", conversationId: "c", text: "01234+y", status: "completed", nextIndex: 7 });
  assert.deepEqual(t.open(), ["a"]);
});

class FakeWs {
  static all = [];
  constructor(url) {
    this.url = new URL(url);
    this.sent = [];
    this.readyState = 1;
    FakeWs.all.push(this);
  }
  send(s) { this.sent.push(JSON.parse(s)); }
  close() { this.readyState = 3; }
  recv(obj) { this.onmessage({ data: JSON.stringify(obj) }); }
  drop(code = 1006) { this.readyState = 3; this.onclose({ code }); }
  static last() { return FakeWs.all[FakeWs.all.length - 1]; }
}

function memory() {
  const m = new Map();
  return { getItem: (k) => m.get(k) ?? null, setItem: (k, v) => m.set(k, v) };
}

const hello = (o = {}) => ({ type: "hello", conn_id: "c", user_id: "u", device_id: "d", node_id: "n", epoch: "e1", seq: 0, resumed: false, heartbeat_ms: 15000, ...o });

test("every event once across a reconnect, resumed from (epoch, seq); a reset re-syncs open turns", async () => {
  mock.timers.enable({ apis: ["setTimeout"] });
  try {
    FakeWs.all = [];
    let tokens = 0;
    const c = new GatewayClient({ url: "http://gw", getToken: () => jwt({ sub: "u", n: ++tokens }), WebSocket: FakeWs, storage: memory(), random: () => 0 });
    const states = [], events = [], turns = [], resets = [];
    c.on("state", (s) => states.push(s)).on("event", (e) => events.push(e.seq)).on("turn", (t) => turns.push(t.text)).on("reset", (r) => resets.push(r));
    const connected = c.connect();
    await flush();
    FakeWs.last().recv(hello());
    await connected;
    const ws1 = FakeWs.last();
    ws1.recv({ type: "turn.start", seq: 1, turn_id: "t", conversation_id: "c" });
    ws1.recv({ type: "turn.delta", seq: 2, turn_id: "t", index: 0, text: "a" });
    ws1.drop();
    assert.deepEqual(states, ["connecting", "connected", "disconnected"]);
    mock.timers.tick(500);
    await flush();
    const ws2 = FakeWs.last();
    assert.equal(ws2.url.searchParams.get("epoch"), "e1");
    assert.equal(ws2.url.searchParams.get("after"), "2");
    ws2.recv(hello({ seq: 3, resumed: true }));
    ws2.recv({ type: "turn.delta", seq: 2, turn_id: "t", index: 0, text: "a" }); // overlap
    ws2.recv({ type: "turn.delta", seq: 3, turn_id: "t", index: 1, text: "b" });
    assert.deepEqual(events, [1, 2, 3]);
    assert.deepEqual(resets, []);
    // The log is lost: a new epoch; the open turn is re-synced with turn.sync.
    ws2.drop();
    mock.timers.tick(500);
    await flush();
    const ws3 = FakeWs.last();
    ws3.recv(hello({ epoch: "e2", seq: 0, resumed: false }));
    assert.equal(resets.length, 1);
    const sync = ws3.sent.find((f) => f.type === "turn.sync");
    assert.equal(sync.turn_id, "t");
    ws3.recv({ type: "turn.delta", seq: 1, turn_id: "t", index: 3, text: "d" });
    ws3.recv({ type: "turn.snapshot", ref: sync.ref, turn_id: "t", conversation_id: "c", status: "streaming", text: "abc", next_index: 3, as_of_seq: 0 });
    await flush();
    assert.equal(turns.at(-1), "abcd");
    assert.deepEqual(events, [1, 2, 3, 1]);
    c.close();
    assert.equal(states.at(-1), "closed");
  } finally {
    mock.timers.reset();
  }
});

test("a drain waits after_ms, a 4001 reconnects at once with a fresh token, refresh is one at a time", async () => {
  mock.timers.enable({ apis: ["setTimeout"] });
  try {
    FakeWs.all = [];
    let asked = 0;
    const now = Math.floor(Date.now() / 1000);
    const c = new GatewayClient({ url: "http://gw", getToken: () => { asked += 1; return jwt({ sub: "u", iat: now, exp: now + 100 }); }, WebSocket: FakeWs, storage: null, random: () => 0.5 });
    const connected = c.connect();
    await flush();
    FakeWs.last().recv(hello());
    await connected;
    FakeWs.last().recv({ type: "reconnect", after_ms: 3000 });
    FakeWs.last().drop(1012);
    mock.timers.tick(2999);
    await flush();
    assert.equal(FakeWs.all.length, 1, "not before after_ms");
    mock.timers.tick(1);
    await flush();
    assert.equal(FakeWs.all.length, 2);
    FakeWs.last().recv(hello());
    FakeWs.last().drop(4001);
    mock.timers.tick(0);
    await flush();
    assert.equal(FakeWs.all.length, 3, "a 4001 reconnects at once");
    assert.equal(asked, 3, "with a fresh token each time");
    FakeWs.last().recv(hello());
    const ws = FakeWs.last();
    mock.timers.tick(70_000); // exp - 30 s
    await flush();
    const refreshes = ws.sent.filter((f) => f.type === "auth.refresh");
    assert.equal(refreshes.length, 1);
    assert.equal(asked, 4);
    c.close();
  } finally {
    mock.timers.reset();
  }
});
