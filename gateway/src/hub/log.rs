//! The retained tail of one user's log: what a reconnecting endpoint can resume from.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::entry::Entry;

/// The newest events of a user's log, bounded by count, by bytes and by age.
#[derive(Debug)]
pub struct Ring {
    /// The newest seq ever appended in this epoch (0: nothing yet).
    head: u64,
    entries: VecDeque<Arc<Entry>>,
    /// What the retained entries cost in memory (see [`cost`]).
    bytes: usize,
}

/// How much of the log is kept for resume.
#[derive(Debug, Clone, Copy)]
pub struct Retention {
    pub count: usize,
    pub age: Duration,
    /// Bytes of one user's log (`GATEWAY_LOG_RETENTION_BYTES`).
    pub bytes: usize,
    /// Bytes of every log of the process together (`GATEWAY_LOG_MEMORY_BYTES`).
    pub node_bytes: usize,
}

/// What keeping an entry costs: its JSON, and about as much again for the entry, its `Arc`
/// and its ring slot (the SSE framing, built lazily, is not counted).
pub fn cost(e: &Entry) -> usize {
    e.json.len() + 96
}

impl Ring {
    pub fn new() -> Self {
        Ring { head: 0, entries: VecDeque::new(), bytes: 0 }
    }

    /// Bytes the retained entries cost.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    pub fn head(&self) -> u64 {
        self.head
    }

    /// The seq the next appended event gets.
    pub fn next_seq(&self) -> u64 {
        self.head + 1
    }

    /// Appends the entry for `next_seq()` and trims what falls outside `retention`; returns
    /// the bytes added and the bytes freed.
    pub fn push(&mut self, entry: Arc<Entry>, retention: Retention) -> (usize, usize) {
        debug_assert_eq!(entry.seq, self.head + 1);
        self.head = entry.seq;
        // The entry was made just now: its time saves reading the clock once per event.
        let now = entry.at;
        let added = if retention.count > 0 {
            let c = cost(&entry);
            self.bytes += c;
            self.entries.push_back(entry);
            c
        } else {
            0
        };
        let mut freed = 0;
        while self.entries.len() > retention.count {
            freed += self.pop();
        }
        freed += self.trim_bytes(retention.bytes);
        freed += self.trim_age(retention, now);
        (added, freed)
    }

    /// Drops the oldest entries until the rest cost at most `max` bytes; returns the bytes freed.
    pub fn trim_bytes(&mut self, max: usize) -> usize {
        let mut freed = 0;
        while self.bytes > max && !self.entries.is_empty() {
            freed += self.pop();
        }
        freed
    }

    fn pop(&mut self) -> usize {
        let c = self.entries.pop_front().map_or(0, |e| cost(&e));
        self.bytes -= c;
        c
    }

    /// Notes that the log reached `seq` elsewhere (Redis mode, read at attach). What is held
    /// stops short of it, so it is dropped: held entries always run up to the head. Returns the
    /// bytes freed.
    pub fn observe(&mut self, seq: u64) -> usize {
        if seq <= self.head {
            return 0;
        }
        self.head = seq;
        self.trim_bytes(0)
    }

    /// Keeps an event appended elsewhere (Redis mode: the node-local cache of the log, filled
    /// from the subscription). One at or before the head is not kept (it is older than what
    /// this node knows of); one past a gap (messages lost) restarts the cache at it, so what is
    /// held is always a contiguous run ending at the head. Returns bytes added and freed.
    pub fn cache(&mut self, entry: Arc<Entry>, retention: Retention) -> (usize, usize) {
        if entry.seq <= self.head {
            return (0, 0);
        }
        let mut freed = 0;
        if entry.seq != self.head + 1 {
            freed += self.observe(entry.seq - 1);
        }
        let (added, more) = self.push(entry, retention);
        (added, freed + more)
    }

    /// Drops entries older than the retention age; returns the bytes freed.
    pub fn trim_age(&mut self, retention: Retention, now: Instant) -> usize {
        let mut freed = 0;
        while self.entries.front().is_some_and(|e| now.duration_since(e.at) > retention.age) {
            freed += self.pop();
        }
        freed
    }

    /// Every event after `after` if the ring still holds all of them, in order; `None` when some
    /// are gone (trimmed) or `after` is beyond the head (not of this log's life).
    pub fn since(&self, after: u64) -> Option<Vec<Arc<Entry>>> {
        self.range(after, self.head)
    }

    /// The events with `after < seq <= upto` (`upto` past the head reads to the head), if the
    /// ring still holds all of them; `None` as for [`since`](Self::since). Touches only those.
    pub fn range(&self, after: u64, upto: u64) -> Option<Vec<Arc<Entry>>> {
        if after > self.head {
            return None;
        }
        let upto = upto.min(self.head);
        if after >= upto {
            return Some(Vec::new());
        }
        let first = self.entries.front()?.seq;
        if first > after + 1 {
            return None;
        }
        let from = (after + 1 - first) as usize;
        let to = (upto + 1 - first) as usize;
        Some(self.entries.range(from..to).cloned().collect())
    }

    /// When the newest retained entry was appended (`None`: nothing retained).
    pub fn newest_at(&self) -> Option<Instant> {
        self.entries.back().map(|e| e.at)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn push(ring: &mut Ring, retention: Retention) {
        let seq = ring.next_seq();
        ring.push(Arc::new(Entry::new(Arc::from("e"), seq, "x", r#"{"type":"x"}"#)), retention);
    }

    fn seqs(v: Option<Vec<Arc<Entry>>>) -> Option<Vec<u64>> {
        v.map(|v| v.iter().map(|e| e.seq).collect())
    }

    const KEEP3: Retention =
        Retention { count: 3, age: Duration::from_secs(3600), bytes: 1 << 20, node_bytes: 1 << 30 };

    #[test]
    fn seq_is_contiguous_from_one() {
        let mut r = Ring::new();
        assert_eq!(seqs(r.since(0)), Some(vec![]));
        for _ in 0..3 {
            push(&mut r, KEEP3);
        }
        assert_eq!(r.head(), 3);
        assert_eq!(seqs(r.since(0)), Some(vec![1, 2, 3]));
        assert_eq!(seqs(r.since(2)), Some(vec![3]));
        assert_eq!(seqs(r.since(3)), Some(vec![]));
        assert_eq!(seqs(r.since(4)), None, "a seq beyond the head is not of this log");
    }

    #[test]
    fn a_range_reads_only_what_it_asks_and_past_the_head_reads_to_it() {
        let mut r = Ring::new();
        for _ in 0..10 {
            push(&mut r, keep(8));
        }
        assert_eq!(seqs(r.range(4, 6)), Some(vec![5, 6]));
        assert_eq!(seqs(r.range(8, 100)), Some(vec![9, 10]), "upto past the head");
        assert_eq!(seqs(r.range(10, 20)), Some(vec![]), "caught up");
        assert_eq!(seqs(r.range(1, 5)), None, "seq 2 was trimmed");
        assert_eq!(seqs(r.range(11, 20)), None, "beyond the head");
    }

    fn keep(count: usize) -> Retention {
        Retention { count, ..KEEP3 }
    }

    #[test]
    fn count_retention_trims_and_resume_fails_past_it() {
        let mut r = Ring::new();
        for _ in 0..5 {
            push(&mut r, KEEP3);
        }
        assert_eq!(seqs(r.since(1)), None, "seq 2 is gone");
        assert_eq!(seqs(r.since(2)), Some(vec![3, 4, 5]));
        assert_eq!(seqs(r.since(5)), Some(vec![]));
    }

    #[test]
    fn zero_retention_only_resumes_at_the_head() {
        let none = Retention { count: 0, age: Duration::from_secs(1), ..KEEP3 };
        let mut r = Ring::new();
        push(&mut r, none);
        push(&mut r, none);
        assert_eq!(seqs(r.since(1)), None);
        assert_eq!(seqs(r.since(2)), Some(vec![]));
    }

    #[test]
    fn byte_retention_keeps_the_newest_that_fit_and_counts_what_it_holds() {
        let mut r = Ring::new();
        let one = cost(&Entry::new(Arc::from("e"), 1, "x", r#"{"type":"x"}"#));
        let two = Retention { count: 100, bytes: 2 * one + one / 2, ..KEEP3 };
        for _ in 0..5 {
            push(&mut r, two);
        }
        assert_eq!(seqs(r.since(3)), Some(vec![4, 5]), "two entries fit");
        assert_eq!(seqs(r.since(2)), None);
        assert_eq!(r.bytes(), 2 * one);
        assert_eq!(r.trim_bytes(one), one);
        assert_eq!(seqs(r.since(4)), Some(vec![5]));
    }

    #[tokio::test(start_paused = true)]
    async fn age_retention_trims_old_events() {
        let short = Retention { count: 100, age: Duration::from_secs(10), ..KEEP3 };
        let mut r = Ring::new();
        push(&mut r, short);
        tokio::time::advance(Duration::from_secs(6)).await;
        push(&mut r, short);
        tokio::time::advance(Duration::from_secs(6)).await;
        r.trim_age(short, Instant::now());
        assert_eq!(seqs(r.since(0)), None, "seq 1 aged out");
        assert_eq!(seqs(r.since(1)), Some(vec![2]));
    }
}
