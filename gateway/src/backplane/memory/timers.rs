//! Named timer sets in this process: members due at a time, found soonest first (the idle turn
//! sweep's "streaming" set).

use std::collections::{BTreeSet, HashMap};

#[derive(Debug, Default)]
pub struct Timers {
    sets: HashMap<String, Set>,
}

#[derive(Debug, Default)]
struct Set {
    by_time: BTreeSet<(i64, String)>,
    at: HashMap<String, i64>,
}

impl Timers {
    pub fn watch(&mut self, set: &str, member: &str, at_ms: i64) {
        let s = self.sets.entry(set.to_owned()).or_default();
        if let Some(old) = s.at.insert(member.to_owned(), at_ms) {
            s.by_time.remove(&(old, member.to_owned()));
        }
        s.by_time.insert((at_ms, member.to_owned()));
    }

    pub fn due(&self, set: &str, at_ms: i64, max: usize) -> Vec<String> {
        let Some(s) = self.sets.get(set) else { return Vec::new() };
        s.by_time
            .iter()
            .take_while(|(t, _)| *t <= at_ms)
            .take(max)
            .map(|(_, m)| m.clone())
            .collect()
    }

    pub fn unwatch(&mut self, set: &str, member: &str) {
        if let Some(s) = self.sets.get_mut(set)
            && let Some(at) = s.at.remove(member)
        {
            s.by_time.remove(&(at, member.to_owned()));
            // Per-user sets (a user's open tasks) come and go: an empty one is dropped.
            if s.at.is_empty() {
                self.sets.remove(set);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn due_soonest_first_and_an_emptied_set_is_dropped() {
        let mut t = Timers::default();
        t.watch("tasks:u", "b", 20);
        t.watch("tasks:u", "a", 10);
        t.watch("tasks:u", "b", 5);
        assert_eq!(t.due("tasks:u", 15, 10), ["b", "a"]);
        t.unwatch("tasks:u", "a");
        t.unwatch("tasks:u", "b");
        assert!(t.sets.is_empty(), "no empty set kept per user");
    }
}
