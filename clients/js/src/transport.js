// The two transports behind one shape: `open*` connects and calls `onFrame(json)` for every
// frame (log events and control frames alike, SSE ones parsed from `data:`), `onClose(code)`
// once when the connection is gone (a WebSocket close code; null for SSE, which has none).

/** Every log event type the gateway sends (SSE dispatches only the names listened to). */
export const EVENT_TYPES = [
  "turn.start", "turn.delta", "turn.trace", "turn.end",
  "notification", "notification.read", "notification.state", "notification.digest",
  "task.status", "task.artifact",
];

function query(params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) {
    if (v !== undefined && v !== null && v !== "") q.set(k, String(v));
  }
  return q.toString();
}

export function openWebSocket(WS, base, params, onFrame, onClose) {
  const url = base.replace(/^http/, "ws") + "/v1/ws?" + query(params);
  const ws = new WS(url);
  let closed = false;
  const done = (code) => {
    if (closed) return;
    closed = true;
    onClose(code);
  };
  ws.onmessage = (m) => {
    let frame;
    try {
      frame = JSON.parse(typeof m.data === "string" ? m.data : String(m.data));
    } catch {
      return;
    }
    onFrame(frame);
  };
  ws.onclose = (e) => done(e.code ?? null);
  ws.onerror = () => {
    try { ws.close(); } catch { /* already closing */ }
    done(null);
  };
  return {
    send: (obj) => { if (ws.readyState === 1) ws.send(JSON.stringify(obj)); },
    close: () => { closed = true; try { ws.close(1000); } catch { /* gone */ } },
  };
}

export function openSse(ES, base, params, onFrame, onClose) {
  const es = new ES(base + "/v1/sse?" + query(params));
  let closed = false;
  const done = () => {
    if (closed) return;
    closed = true;
    es.close();
    onClose(null);
  };
  const listen = (name) => es.addEventListener(name, (m) => {
    try {
      onFrame(JSON.parse(m.data));
    } catch { /* not JSON: ignored */ }
  });
  for (const t of ["hello", "reconnect", "message", ...EVENT_TYPES]) listen(t);
  // The stream ended or failed: this client reconnects itself (with its own position and a
  // fresh token), so EventSource's own retry is stopped.
  es.onerror = () => done();
  return {
    send: () => {},
    close: () => { closed = true; es.close(); },
  };
}
