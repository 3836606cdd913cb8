//! Traffic per tenant (the JWT `tid`, PROTOCOL.md v1.1) with bounded label cardinality: each
//! tenant's counters are kept (up to [`MAX_TRACKED`], past which new tenants count as `other`),
//! and only the top N by delivered events get a label of their own when rendered; the rest are
//! summed under `other`. Users without `tid` are `none`; producer traffic (turns, deltas,
//! notifications) counts under the tenant last seen on the user's endpoints, else `unknown`.
//!
//! A tenant crossing into or out of the top N moves its volume between its own series and
//! `other`, which Prometheus reads as a counter reset of `other`: `rate()` over the sum of all
//! tenant series stays right, a single `other` series may dip once.

use std::fmt::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};

use dashmap::DashMap;

/// Tenants whose counters are kept apart at most.
pub const MAX_TRACKED: usize = 10_000;
/// Users whose last tenant is remembered at most (for producer traffic).
const MAX_USERS: usize = 200_000;

#[derive(Default)]
pub struct TenantCounters {
    pub endpoints: AtomicI64,
    pub events: AtomicU64,
    pub bytes: AtomicU64,
    pub turns: AtomicU64,
    pub deltas: AtomicU64,
    pub notifications: AtomicU64,
}

pub struct Tenants {
    top: std::sync::atomic::AtomicUsize,
    map: DashMap<Arc<str>, Arc<TenantCounters>>,
    users: DashMap<Arc<str>, Arc<str>>,
    other: Arc<TenantCounters>,
    none: Arc<TenantCounters>,
    unknown: Arc<TenantCounters>,
}

impl Tenants {
    pub fn new(top: usize) -> Tenants {
        Tenants {
            top: top.into(),
            map: DashMap::new(),
            users: DashMap::new(),
            other: Default::default(),
            none: Default::default(),
            unknown: Default::default(),
        }
    }

    /// How many tenants get a label of their own (`GATEWAY_METRICS_TOP_TENANTS`).
    pub fn set_top(&self, n: usize) {
        self.top.store(n, Relaxed);
    }

    /// The counters of an endpoint of `user` with the token's `tid`; notes the user's tenant.
    pub fn of_endpoint(&self, user: &Arc<str>, tid: Option<&Arc<str>>) -> Arc<TenantCounters> {
        // "" stands for "no tid" (never a tenant id: those are 1-64 characters).
        let noted = tid.cloned().unwrap_or_else(|| Arc::from(""));
        if self.users.len() < MAX_USERS || self.users.contains_key(user) {
            self.users.insert(user.clone(), noted);
        }
        match tid {
            Some(tid) => self.tenant(tid),
            None => self.none.clone(),
        }
    }

    /// The counters producer traffic for `user` goes to.
    pub fn of_user(&self, user: &str) -> Arc<TenantCounters> {
        match self.users.get(user).map(|t| t.clone()) {
            Some(tid) if tid.is_empty() => self.none.clone(),
            Some(tid) => self.tenant(&tid),
            None => self.unknown.clone(),
        }
    }

    fn tenant(&self, tid: &Arc<str>) -> Arc<TenantCounters> {
        if let Some(c) = self.map.get(tid) {
            return c.clone();
        }
        if self.map.len() >= MAX_TRACKED {
            return self.other.clone();
        }
        self.map.entry(tid.clone()).or_default().clone()
    }

    /// The per-tenant families: the top N tenants by delivered events, then `other`, `none`
    /// and `unknown`.
    pub fn render(&self, out: &mut String) {
        let mut all: Vec<(Arc<str>, Arc<TenantCounters>)> =
            self.map.iter().map(|e| (e.key().clone(), e.value().clone())).collect();
        all.sort_by_key(|(_, c)| std::cmp::Reverse(c.events.load(Relaxed)));
        let top = self.top.load(Relaxed);
        let rest = if all.len() > top { all.split_off(top) } else { Vec::new() };
        let mut rows: Vec<(&str, [i64; 6])> = all.iter().map(|(t, c)| (&**t, values(c))).collect();
        let mut other = values(&self.other);
        for (_, c) in &rest {
            for (o, v) in other.iter_mut().zip(values(c)) {
                *o += v;
            }
        }
        rows.push(("other", other));
        rows.push(("none", values(&self.none)));
        rows.push(("unknown", values(&self.unknown)));
        for (i, (name, kind, help)) in FAMILIES.iter().enumerate() {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
            for (tenant, v) in &rows {
                let _ = writeln!(out, "{name}{{tenant=\"{}\"}} {}", escape(tenant), v[i]);
            }
        }
    }
}

fn values(c: &TenantCounters) -> [i64; 6] {
    [
        c.endpoints.load(Relaxed).max(0),
        c.events.load(Relaxed) as i64,
        c.bytes.load(Relaxed) as i64,
        c.turns.load(Relaxed) as i64,
        c.deltas.load(Relaxed) as i64,
        c.notifications.load(Relaxed) as i64,
    ]
}

/// Tenant ids are `[A-Za-z0-9._:-]` (checked at authentication); escaped anyway.
fn escape(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

const FAMILIES: [(&str, &str, &str); 6] = [
    (
        "gateway_tenant_endpoints",
        "gauge",
        "Live endpoints by tenant (top N by volume, then other, none, unknown)",
    ),
    (
        "gateway_tenant_events_delivered_total",
        "counter",
        "Log events written to endpoints, by tenant",
    ),
    (
        "gateway_tenant_bytes_delivered_total",
        "counter",
        "Bytes of log events written to endpoints, by tenant",
    ),
    ("gateway_tenant_turns_total", "counter", "Turns started, by the user's tenant"),
    (
        "gateway_tenant_deltas_total",
        "counter",
        "Producer items applied to turns, by the user's tenant",
    ),
    (
        "gateway_tenant_notifications_total",
        "counter",
        "Notifications accepted, by the user's tenant",
    ),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ten_thousand_tenants_render_as_top_n_and_the_rest() {
        let t = Tenants::new(20);
        for i in 0..MAX_TRACKED + 500 {
            let user: Arc<str> = Arc::from(format!("u{i}"));
            let c = t.of_endpoint(&user, Some(&Arc::from(format!("t{i}"))));
            c.events.fetch_add(i as u64, Relaxed);
        }
        let anonymous = t.of_endpoint(&Arc::from("anon"), None);
        anonymous.events.fetch_add(7, Relaxed);
        t.of_user("anon").deltas.fetch_add(2, Relaxed);
        t.of_user("u3").turns.fetch_add(1, Relaxed);
        t.of_user("nobody").notifications.fetch_add(1, Relaxed);
        let mut out = String::new();
        t.render(&mut out);
        let series: Vec<&str> = out
            .lines()
            .filter(|l| l.starts_with("gateway_tenant_events_delivered_total{"))
            .collect();
        assert_eq!(series.len(), 23, "20 tenants, other, none, unknown");
        assert!(series[0].contains("tenant=\"t9999\""), "the biggest first: {}", series[0]);
        let total: u64 =
            series.iter().map(|l| l.rsplit(' ').next().unwrap().parse::<u64>().unwrap()).sum();
        let sent: u64 = (0..MAX_TRACKED as u64 + 500).sum::<u64>() + 7;
        assert_eq!(total, sent, "nothing lost to the bound");
        assert!(
            out.contains("gateway_tenant_turns_total{tenant=\"other\"} 1"),
            "u3's tenant is past the top 20"
        );
        assert!(out.contains("gateway_tenant_notifications_total{tenant=\"unknown\"} 1"));
        assert!(out.contains("gateway_tenant_events_delivered_total{tenant=\"none\"} 7"));
        assert!(
            out.contains("gateway_tenant_deltas_total{tenant=\"none\"} 2"),
            "a user without tid"
        );
    }
}
