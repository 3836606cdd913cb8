// Tokens: when to refresh one (the earlier of exp - 30 s and 80 % of its life), read from its
// claims without verifying them (the gateway verifies).

/** The claims of a JWT, or null when it is not one. */
export function claims(token) {
  const part = typeof token === "string" ? token.split(".")[1] : undefined;
  if (!part) return null;
  try {
    const b64 = part.replace(/-/g, "+").replace(/_/g, "/");
    const padded = b64 + "=".repeat((4 - (b64.length % 4)) % 4);
    const text = typeof atob === "function" ? atob(padded) : Buffer.from(padded, "base64").toString("binary");
    return JSON.parse(decodeURIComponent(escape(text)));
  } catch {
    return null;
  }
}

/**
 * Milliseconds from `nowMs` until `token` should be refreshed; null when it has no `exp`.
 * Its life starts at `iat` when present, else at `obtainedMs` (when the SDK got it).
 */
export function refreshIn(token, nowMs, obtainedMs = nowMs) {
  const c = claims(token);
  if (!c || typeof c.exp !== "number") return null;
  const exp = c.exp * 1000;
  const start = typeof c.iat === "number" ? c.iat * 1000 : obtainedMs;
  const at = Math.min(exp - 30_000, start + 0.8 * (exp - start));
  return Math.max(0, at - nowMs);
}
