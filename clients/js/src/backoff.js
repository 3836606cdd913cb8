// Reconnect delays: full-jitter exponential backoff between about 0.5 s and 20 s, back to the
// minimum once a connection reached `connected` (AWS's "full jitter", floored so a flapping
// server is not hammered).

export const MIN_MS = 500;
export const MAX_MS = 20_000;

export class Backoff {
  constructor(random = Math.random) {
    this.attempt = 0;
    this.random = random;
  }

  /** The delay before the next attempt, and one more attempt counted. */
  next() {
    const cap = Math.min(MAX_MS, MIN_MS * 2 ** this.attempt);
    this.attempt += 1;
    return MIN_MS + this.random() * (cap - MIN_MS);
  }

  reset() {
    this.attempt = 0;
  }
}
