// The SDK against the real gateway binary: a turn of 2,000 deltas streamed while a proxy cuts
// the connection every few hundred milliseconds (WebSocket and SSE), a token that expires
// mid-stream, and a drain that moves the client to a second node (Redis mode).
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import net from "node:net";
import { after, test } from "node:test";

import { EventSource } from "eventsource";
import WebSocket from "ws";

import { GatewayClient } from "../src/index.js";
import { post, proxy, startGateway, token } from "./harness.js";

const stops = [];
after(() => { for (const s of stops) s(); });

/** Streams `n` deltas to a new turn of `user`, `per` a request; resolves with the whole text. */
async function streamTurn(url, user, turnId, n, { per = 20, pauseMs = 10 } = {}) {
  await post(url, "/v1/turns", { user_id: user, conversation_id: "c", turn_id: turnId });
  let text = "";
  for (let i = 0; i < n; i += per) {
    let body = "";
    for (let j = i; j < Math.min(n, i + per); j++) {
      const d = `[${j}]`;
      text += d;
      body += JSON.stringify({ delta: d }) + "\n";
    }
    await post(url, `/v1/turns/${turnId}/events`, body, { ndjson: true });
    await new Promise((r) => setTimeout(r, pauseMs));
  }
  await post(url, `/v1/turns/${turnId}/events`, { end: { status: "completed" } });
  return text;
}

/** Collects a client's events and turns; checks each event once, in seq order. */
function watch(client) {
  const seen = { seqs: [], turns: new Map(), states: [] };
  client.on("event", (e) => seen.seqs.push(e.seq));
  client.on("turn", (t) => seen.turns.set(t.turnId, t));
  client.on("state", (s) => seen.states.push(s));
  seen.ended = (id, ms = 60_000) => new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`turn ${id} did not end: ${JSON.stringify(seen.turns.get(id))}`)), ms);
    const check = (turn) => {
      if (turn.turnId === id && turn.status !== "streaming") {
        clearTimeout(t);
        client.off("turn", check);
        resolve(turn);
      }
    };
    client.on("turn", check);
  });
  return seen;
}

function once(seqs) {
  for (let i = 1; i < seqs.length; i++) assert.equal(seqs[i], seqs[i - 1] + 1, `seq ${seqs[i]} after ${seqs[i - 1]}`);
}

for (const transport of ["websocket", "sse"]) {
  test(`${transport}: a 2,000-delta turn through a proxy cut every 300 ms ends with the exact text, every event once`, async () => {
    const gw = await startGateway();
    stops.push(gw.stop);
    const p = await proxy([gw.url]);
    stops.push(p.close);
    const user = `cut-${transport}`;
    const client = new GatewayClient({ url: p.url, getToken: () => token(user), transport, WebSocket, EventSource, storage: null });
    const seen = watch(client);
    await client.connect();
    let cuts = 0;
    const cutter = setInterval(() => { if (p.cut() > 0) cuts += 1; }, 300);
    const ended = seen.ended("big");
    const text = await streamTurn(gw.url, user, "big", 2000);
    const turn = await ended;
    clearInterval(cutter);
    client.close();
    assert.equal(turn.text, text, "the exact text");
    assert.equal(turn.status, "completed");
    once(seen.seqs);
    assert.equal(seen.seqs.length, 2 + 2000, "start, 2,000 deltas, end");
    assert.ok(cuts >= 2, `the proxy cut the connection ${cuts} times`);
    console.log(`${transport}: ${cuts} cuts survived, ${seen.seqs.length} events each once`);
  });
}

test("a token that expires mid-stream is refreshed without a gap", async () => {
  const gw = await startGateway({ GATEWAY_AUTH_LEEWAY_MS: "0" });
  stops.push(gw.stop);
  let asked = 0;
  // 33 s of life: refreshed at exp - 30 s, 3 s in.
  const client = new GatewayClient({ url: gw.url, getToken: () => { asked += 1; return token("exp-user", { lifeS: 33 }); }, WebSocket, storage: null });
  const seen = watch(client);
  await client.connect();
  const ended = seen.ended("t-exp");
  const text = await streamTurn(gw.url, "exp-user", "t-exp", 500, { per: 5, pauseMs: 50 });
  const turn = await ended;
  client.close();
  assert.equal(turn.text, text);
  assert.ok(asked >= 2, `getToken called ${asked} times`);
  assert.deepEqual(seen.states, ["connecting", "connected", "closed"], "never disconnected");
  once(seen.seqs);
});

function freePort() {
  return new Promise((resolve) => {
    const s = net.createServer().listen(0, "127.0.0.1", () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

test("a drain moves the client to a second node (Redis mode) without loss", async () => {
  const port = await freePort();
  const redis = spawn("redis-server", ["--port", String(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"], { stdio: "ignore" });
  stops.push(() => redis.kill("SIGKILL"));
  await new Promise((r) => setTimeout(r, 300));
  const env = { GATEWAY_REDIS_URL: `redis://127.0.0.1:${port}/`, GATEWAY_REDIS_PREFIX: `js${port}`, GATEWAY_RECONNECT_AFTER_MS: "200" };
  const a = await startGateway({ ...env, GATEWAY_NODE_ID: "node-a" });
  const b = await startGateway({ ...env, GATEWAY_NODE_ID: "node-b" });
  stops.push(a.stop, b.stop);
  const p = await proxy([a.url, b.url]);
  stops.push(p.close);
  const client = new GatewayClient({ url: p.url, getToken: () => token("drained"), WebSocket, storage: null });
  const seen = watch(client);
  await client.connect();
  const ended = seen.ended("t-drain");
  const streaming = streamTurn(b.url, "drained", "t-drain", 1000, { per: 10, pauseMs: 10 });
  await new Promise((r) => setTimeout(r, 300));
  a.stop("SIGTERM");
  const text = await streaming;
  const turn = await ended;
  const nodes = (await client.presence()).map((e) => e.node_id);
  client.close();
  assert.equal(turn.text, text);
  once(seen.seqs);
  assert.ok(seen.states.includes("disconnected"), "it moved");
  assert.deepEqual(nodes, ["node-b"]);
});
