//! Key and channel names. Everything of one user carries the user's hash tag (`{user}`), so
//! every script touches one slot and runs on a Redis Cluster; the outbox has a slot of its own
//! (`{<ns>:outbox}`), and so does each timer set; claimed keys (a turn id → its user) live
//! elsewhere, and are read alone.

use presence::{slot_tag, user_of_tag};

// What follows `<ns>:{<tag>}` in each key of a user: one spelling for the keys named one by
// one and those written straight into a batch's command.
const LOG: &str = ":log";
const META: &str = ":meta";
const CHANNEL: &str = ":ch";
const RECORD: &str = ":r:";
const TEXT: &str = ":rt:";
const ITEMS: &str = ":ri:";

/// Names under one namespace (deployments, and tests, share a Redis by namespace).
#[derive(Debug, Clone)]
pub struct Keys {
    ns: String,
}

/// The keys of one user's log.
pub struct LogKeys {
    /// LIST of `<ms>|<event JSON with seq>`, oldest first, capped by count and age.
    pub log: String,
    /// HASH `epoch`, `head` (newest seq).
    pub meta: String,
    /// Where the user's events are published.
    pub channel: String,
}

/// The keys of one record (see `backplane::record`), in its user's slot.
pub struct RecordKeys {
    /// HASH of its fields, with `v` (version), `seq0` and `seq`.
    pub record: String,
    /// STRING: its text blob.
    pub text: String,
    /// LIST: its items blob.
    pub items: String,
}

/// The outbox of finished turns waiting for the store.
pub struct OutboxKeys {
    /// ZSET turn id → when it may next be tried (Unix ms).
    pub due: String,
    /// ZSET turn id → when it was enqueued.
    pub age: String,
    /// HASH turn id → user (where its state is).
    pub who: String,
    /// HASH turn id → failed attempts.
    pub tries: String,
    /// HASH turn id → `user|error` of turns set aside.
    pub aside: String,
}

impl Keys {
    pub fn new(ns: &str) -> Self {
        Keys { ns: ns.to_owned() }
    }

    fn user(&self, user: &str) -> String {
        let mut u = String::new();
        self.user_into(&mut u, user);
        u
    }

    pub fn log(&self, user: &str) -> LogKeys {
        let u = self.user(user);
        LogKeys {
            log: format!("{u}{LOG}"),
            meta: format!("{u}{META}"),
            channel: format!("{u}{CHANNEL}"),
        }
    }

    pub fn record(&self, user: &str, name: &str) -> RecordKeys {
        let u = self.user(user);
        RecordKeys {
            record: format!("{u}{RECORD}{name}"),
            text: format!("{u}{TEXT}{name}"),
            items: format!("{u}{ITEMS}{name}"),
        }
    }

    /// Writes an append's five keys into `cmd` in `append.lua`'s order (log, meta, record,
    /// text, items), each built in `buf`: a batch's command is built per append at load, and
    /// [`Self::log`] and [`Self::record`] make eight strings for it.
    pub fn write_append_keys(
        &self,
        cmd: &mut redis::Cmd,
        buf: &mut String,
        user: &str,
        name: &str,
    ) {
        self.user_into(buf, user);
        let base = buf.len();
        for suffix in [LOG, META] {
            buf.truncate(base);
            buf.push_str(suffix);
            cmd.arg(buf.as_str());
        }
        for kind in [RECORD, TEXT, ITEMS] {
            buf.truncate(base);
            buf.push_str(kind);
            buf.push_str(name);
            cmd.arg(buf.as_str());
        }
    }

    /// Writes a user's channel into `cmd` (as [`Self::log`]'s `channel`), built in `buf`.
    pub fn write_channel(&self, cmd: &mut redis::Cmd, buf: &mut String, user: &str) {
        self.user_into(buf, user);
        buf.push_str(CHANNEL);
        cmd.arg(buf.as_str());
    }

    /// `buf` = `<ns>:{<tag>}`, what every key of `user` begins with.
    fn user_into(&self, buf: &mut String, user: &str) {
        buf.clear();
        buf.push_str(&self.ns);
        buf.push_str(":{");
        buf.push_str(&slot_tag(user));
        buf.push('}');
    }

    /// A ZSET of timers (member → due, Unix ms), a slot of its own, read alone.
    pub fn timers(&self, set: &str) -> String {
        format!("{{{}:w:{set}}}", self.ns)
    }

    /// A node-wide claimed key (a turn id → its user), read alone.
    pub fn claim(&self, key: &str) -> String {
        format!("{}:k:{key}", self.ns)
    }

    pub fn outbox(&self) -> OutboxKeys {
        let o = format!("{{{}:outbox}}", self.ns);
        OutboxKeys {
            due: format!("{o}:due"),
            age: format!("{o}:age"),
            who: format!("{o}:who"),
            tries: format!("{o}:tries"),
            aside: format!("{o}:aside"),
        }
    }

    /// The user a channel belongs to (the inverse of `log(user).channel`).
    pub fn user_of_channel<'a>(&self, channel: &'a str) -> Option<std::borrow::Cow<'a, str>> {
        let within = channel.strip_prefix(self.ns.as_str())?.strip_prefix(":{")?;
        user_of_tag(within.strip_suffix(CHANNEL)?.strip_suffix('}')?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_users_keys_share_one_tag_and_channels_map_back() {
        let k = Keys::new("gw");
        for user in ["alice", "a}b", "{x}", "é:1"] {
            let log = k.log(user);
            let tag = |key: &str| {
                let open = key.find('{').unwrap();
                let close = open + key[open..].find('}').unwrap();
                key[open + 1..close].to_owned()
            };
            let t = tag(&log.log);
            assert!(!t.is_empty(), "{user}: an empty tag would scatter the keys");
            for key in [
                &log.meta,
                &log.channel,
                &k.record(user, "t:1").text,
                &k.record(user, "dd:d").items,
            ] {
                assert_eq!(tag(key), t, "{user}: {key}");
            }
            assert_eq!(k.user_of_channel(&log.channel).unwrap(), user);
        }
        assert!(k.user_of_channel("other:{x}:ch").is_none());
    }

    #[test]
    fn keys_written_into_a_command_are_the_keys_named_one_by_one() {
        let k = Keys::new("gw");
        let (mut cmd, mut buf) = (redis::cmd("X"), String::new());
        for (user, name) in [("alice", "t:1"), ("a}b", "dd:d")] {
            k.write_append_keys(&mut cmd, &mut buf, user, name);
            k.write_channel(&mut cmd, &mut buf, user);
        }
        let written: Vec<String> = cmd
            .args_iter()
            .skip(1)
            .map(|a| match a {
                redis::Arg::Simple(b) => String::from_utf8(b.to_vec()).unwrap(),
                _ => unreachable!("keys are plain arguments"),
            })
            .collect();
        let mut named = Vec::new();
        for (user, name) in [("alice", "t:1"), ("a}b", "dd:d")] {
            let (log, r) = (k.log(user), k.record(user, name));
            named.extend([log.log, log.meta, r.record, r.text, r.items, log.channel]);
        }
        assert_eq!(written, named);
    }
}
