// What the integration tests run against: the real gateway binary (GATEWAY_BIN, else the
// workspace's debug build) on 127.0.0.1:0, tokens signed with its test secret, a producer, and
// a TCP proxy that can cut every connection through it.
import { spawn } from "node:child_process";
import { createHmac } from "node:crypto";
import { mkdtempSync } from "node:fs";
import net from "node:net";
import { tmpdir } from "node:os";
import path from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";

export const SECRET = "js-sdk-test-secret-0123456789abcdef";
const here = path.dirname(fileURLToPath(import.meta.url));
const BIN = process.env.GATEWAY_BIN ?? path.join(here, "../../../target/debug/gateway");

export function token(sub, { scope, lifeS = 3600 } = {}) {
  const now = Math.floor(Date.now() / 1000);
  const b = (o) => Buffer.from(JSON.stringify(o)).toString("base64url");
  const claims = { sub, iat: now, exp: now + lifeS, ...(scope ? { scope } : {}) };
  const head = `${b({ alg: "HS256", typ: "JWT" })}.${b(claims)}`;
  return `${head}.${createHmac("sha256", SECRET).update(head).digest("base64url")}`;
}

export const producer = () => token("orchestrator", { scope: "gateway.publish" });

/** Starts a gateway; resolves with `{url, child, stop()}` once it listens. */
export function startGateway(env = {}, args = []) {
  const child = spawn(BIN, args, {
    env: {
      PATH: process.env.PATH,
      GATEWAY_LISTEN: "127.0.0.1:0",
      GATEWAY_DATA_DIR: mkdtempSync(path.join(tmpdir(), "gw-js-")),
      GATEWAY_AUTH_HS256_SECRET: SECRET,
      GATEWAY_LOG: "warn",
      ...env,
    },
    stdio: ["ignore", "pipe", "inherit"],
  });
  return new Promise((resolve, reject) => {
    const lines = createInterface({ input: child.stdout });
    // Keep reading: --dev prints its tokens after the first line, and a full pipe would block.
    lines.on("line", () => {});
    lines.once("line", (l) => {
      const m = /^listening on (http:\/\/\S+)/.exec(l);
      if (!m) return reject(new Error(`gateway said ${l}`));
      resolve({ url: m[1], child, stop: (sig = "SIGKILL") => child.kill(sig) });
    });
    child.once("exit", (c) => reject(new Error(`gateway exited ${c}`)));
  });
}

export async function post(url, path_, body, { ndjson = false, tok = producer() } = {}) {
  const r = await fetch(url + path_, {
    method: "POST",
    headers: { authorization: `Bearer ${tok}`, "content-type": ndjson ? "application/x-ndjson" : "application/json" },
    body: ndjson ? body : JSON.stringify(body),
  });
  const v = await r.json().catch(() => null);
  if (!r.ok) throw new Error(`${path_}: ${r.status} ${JSON.stringify(v)}`);
  return v;
}

/**
 * A TCP proxy on 127.0.0.1:0 to the first of `targets` that accepts; `cut()` drops every
 * connection through it (clients see their connection die mid-stream).
 */
export async function proxy(targets) {
  const live = new Set();
  const server = net.createServer((client) => {
    const tryAt = (i) => {
      if (i >= targets.length) return client.destroy();
      const u = new URL(targets[i]);
      const up = net.connect(Number(u.port), u.hostname);
      up.once("error", () => tryAt(i + 1));
      up.once("connect", () => {
        up.removeAllListeners("error");
        const pair = { client, up };
        live.add(pair);
        const end = () => { client.destroy(); up.destroy(); live.delete(pair); };
        client.on("error", end).on("close", end);
        up.on("error", end).on("close", end);
        client.pipe(up);
        up.pipe(client);
      });
    };
    tryAt(0);
  });
  await new Promise((r) => server.listen(0, "127.0.0.1", r));
  return {
    url: `http://127.0.0.1:${server.address().port}`,
    cut() {
      const n = live.size;
      for (const { client, up } of live) { client.destroy(); up.destroy(); }
      live.clear();
      return n;
    },
    close: () => { for (const { client, up } of live) { client.destroy(); up.destroy(); } server.close(); },
  };
}
