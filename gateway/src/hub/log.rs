//! The retained tail of one user's log: what a reconnecting endpoint can resume from.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::entry::Entry;

/// The newest events of a user's log, bounded by count and by age.
#[derive(Debug)]
pub struct Ring {
    /// The newest seq ever appended in this epoch (0: nothing yet).
    head: u64,
    entries: VecDeque<Arc<Entry>>,
}

/// How much of the log is kept for resume.
#[derive(Debug, Clone, Copy)]
pub struct Retention {
    pub count: usize,
    pub age: Duration,
}

impl Ring {
    pub fn new() -> Self {
        Ring { head: 0, entries: VecDeque::new() }
    }

    pub fn head(&self) -> u64 {
        self.head
    }

    /// The seq the next appended event gets.
    pub fn next_seq(&self) -> u64 {
        self.head + 1
    }

    /// Appends the entry for `next_seq()` and trims what falls outside `retention`.
    pub fn push(&mut self, entry: Arc<Entry>, retention: Retention) {
        debug_assert_eq!(entry.seq, self.head + 1);
        self.head = entry.seq;
        if retention.count > 0 {
            self.entries.push_back(entry);
        }
        while self.entries.len() > retention.count {
            self.entries.pop_front();
        }
        self.trim_age(retention, Instant::now());
    }

    /// Notes an event appended elsewhere (Redis mode): nothing is retained, only the head moves.
    pub fn observe(&mut self, seq: u64) {
        self.head = self.head.max(seq);
    }

    /// Drops entries older than the retention age.
    pub fn trim_age(&mut self, retention: Retention, now: Instant) {
        while self.entries.front().is_some_and(|e| now.duration_since(e.at) > retention.age) {
            self.entries.pop_front();
        }
    }

    /// Every event after `after` if the ring still holds all of them, in order; `None` when some
    /// are gone (trimmed) or `after` is beyond the head (not of this log's life).
    pub fn since(&self, after: u64) -> Option<Vec<Arc<Entry>>> {
        if after > self.head {
            return None;
        }
        if after == self.head {
            return Some(Vec::new());
        }
        let first = self.entries.front()?.seq;
        if first > after + 1 {
            return None;
        }
        let skip = (after + 1 - first) as usize;
        Some(self.entries.iter().skip(skip).cloned().collect())
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

    const KEEP3: Retention = Retention { count: 3, age: Duration::from_secs(3600) };

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
        let none = Retention { count: 0, age: Duration::from_secs(1) };
        let mut r = Ring::new();
        push(&mut r, none);
        push(&mut r, none);
        assert_eq!(seqs(r.since(1)), None);
        assert_eq!(seqs(r.since(2)), Some(vec![]));
    }

    #[tokio::test(start_paused = true)]
    async fn age_retention_trims_old_events() {
        let short = Retention { count: 100, age: Duration::from_secs(10) };
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
