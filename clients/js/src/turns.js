// Turn assembly: each turn's whole text so far, from its deltas (by index, each once) and from
// snapshots (`turn.sync`, or `GET /v1/turns/{id}?snapshot=true`) when the client joined
// mid-turn or the log could not resume. Deltas that arrive while a snapshot is awaited wait
// and are applied after it, from its `next_index`.

export class Turns {
  constructor() {
    /** @type {Map<string, {turnId: string, conversationId: string, text: string, status: string, nextIndex: number, syncing: boolean, waiting: any[]}>} */
    this.turns = new Map();
  }

  /** A copy for the app (`turn` event). */
  static view(t) {
    return { turnId: t.turnId, conversationId: t.conversationId, text: t.text, status: t.status, nextIndex: t.nextIndex };
  }

  entry(turnId, conversationId = "") {
    let t = this.turns.get(turnId);
    if (!t) {
      t = { turnId, conversationId, text: "", status: "streaming", nextIndex: 0, syncing: false, waiting: [] };
      this.turns.set(turnId, t);
    }
    return t;
  }

  /**
   * Applies a log event; returns `{changed, sync}`: the turn's view when it changed, and a
   * turn id to snapshot when a delta shows the client missed its start.
   */
  apply(ev) {
    const id = ev.turn_id;
    if (!id) return {};
    if (ev.type === "turn.start") {
      const known = this.turns.get(id);
      const t = this.entry(id, ev.conversation_id);
      t.conversationId = ev.conversation_id;
      return known ? {} : { changed: Turns.view(t) };
    }
    if (ev.type === "turn.delta") {
      const known = this.turns.has(id);
      const t = this.entry(id);
      if (t.syncing) {
        t.waiting.push(ev);
        return {};
      }
      if (ev.index === t.nextIndex) {
        t.text += ev.text;
        t.nextIndex += 1;
        return { changed: Turns.view(t) };
      }
      if (ev.index < t.nextIndex) return {};
      // A gap: the start (or earlier deltas) came before this client did.
      t.syncing = true;
      t.waiting.push(ev);
      return { sync: id, created: !known };
    }
    if (ev.type === "turn.end") {
      const t = this.turns.get(id);
      if (!t) return {};
      if (t.syncing) {
        t.waiting.push(ev);
        return {};
      }
      t.status = ev.status;
      return { changed: Turns.view(t) };
    }
    return {};
  }

  /** Marks a turn as being snapshotted (after a reset). */
  syncing(id) {
    const t = this.turns.get(id);
    if (t) t.syncing = true;
  }

  /** A snapshot arrived: the turn is its text, then the deltas that waited. */
  snapshot(s) {
    const t = this.entry(s.turn_id, s.conversation_id);
    t.conversationId = s.conversation_id;
    t.text = s.text;
    t.nextIndex = s.next_index;
    t.status = s.status;
    t.syncing = false;
    const waiting = t.waiting;
    t.waiting = [];
    for (const ev of waiting) this.apply(ev);
    return Turns.view(t);
  }

  /** The snapshot failed: apply what waited as it is (the text may miss its start). */
  failed(id) {
    const t = this.turns.get(id);
    if (!t) return null;
    t.syncing = false;
    const waiting = t.waiting;
    t.waiting = [];
    t.nextIndex = waiting.find((e) => e.type === "turn.delta")?.index ?? t.nextIndex;
    for (const ev of waiting) this.apply(ev);
    return Turns.view(t);
  }

  /** Turns not ended (what a reset must re-sync). */
  open() {
    return [...this.turns.values()].filter((t) => t.status === "streaming").map((t) => t.turnId);
  }

  /** Ended turns are kept only so long: the oldest go first. */
  trim(max = 200) {
    for (const [id, t] of this.turns) {
      if (this.turns.size <= max) return;
      if (t.status !== "streaming") this.turns.delete(id);
    }
  }
}
