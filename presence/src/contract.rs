//! The behaviour every [`PresenceRegistry`] must show. Each backend's tests call [`run_all`]
//! with a factory for fresh, empty registries whose TTL is short (a few hundred ms): the TTL
//! checks wait in real time, because a remote backend keeps its own clock.

use std::sync::Arc;
use std::time::Duration;

use wire::{EndpointInfo, Surface, Transport};

use crate::{EndpointKey, PresenceRegistry};

/// A factory of fresh registries (each call: a clean namespace).
pub type Factory<'a> = &'a (dyn Fn() -> Box<dyn PresenceRegistry> + Sync);

/// An endpoint record for tests.
pub fn endpoint(conn_id: &str, node_id: &str) -> Arc<EndpointInfo> {
    Arc::new(EndpointInfo {
        conn_id: conn_id.to_owned(),
        device_id: format!("dev-{conn_id}"),
        surface: Surface::Web,
        transport: Transport::Ws,
        node_id: node_id.to_owned(),
        connected_at: "2026-11-23T00:00:00.000Z".to_owned(),
    })
}

fn ids(list: &[EndpointInfo]) -> Vec<&str> {
    list.iter().map(|e| e.conn_id.as_str()).collect()
}

/// Runs every check, each on a fresh registry.
pub async fn run_all(make: Factory<'_>) {
    lists_what_was_registered_in_order(make().as_ref()).await;
    users_are_isolated(make().as_ref()).await;
    look_alike_user_ids_are_isolated(make().as_ref()).await;
    unregister_removes_at_once(make().as_ref()).await;
    entries_expire_without_refresh(make().as_ref()).await;
    refresh_keeps_entries_alive(make().as_ref()).await;
    a_late_refresh_does_not_resurrect(make().as_ref()).await;
}

pub async fn lists_what_was_registered_in_order(p: &dyn PresenceRegistry) {
    let a = endpoint("c_a", "n1");
    let mut b = EndpointInfo::clone(&endpoint("c_b", "n2"));
    b.transport = Transport::Sse;
    b.surface = Surface::Teams;
    let b = Arc::new(b);
    p.register("u1", a.clone()).await.unwrap();
    p.register("u1", b.clone()).await.unwrap();
    let list = p.list("u1").await.unwrap();
    assert_eq!(
        list,
        vec![EndpointInfo::clone(&a), EndpointInfo::clone(&b)],
        "every field survives, oldest first"
    );
    assert!(p.list("nobody").await.unwrap().is_empty());
}

pub async fn users_are_isolated(p: &dyn PresenceRegistry) {
    p.register("u1", endpoint("c1", "n1")).await.unwrap();
    p.register("u2", endpoint("c2", "n1")).await.unwrap();
    assert_eq!(ids(&p.list("u1").await.unwrap()), ["c1"]);
    assert_eq!(ids(&p.list("u2").await.unwrap()), ["c2"]);
}

pub async fn unregister_removes_at_once(p: &dyn PresenceRegistry) {
    p.register("u1", endpoint("c1", "n1")).await.unwrap();
    p.register("u1", endpoint("c2", "n1")).await.unwrap();
    p.unregister("u1", "c1").await.unwrap();
    p.unregister("u1", "never-registered").await.unwrap();
    p.unregister("nobody", "c1").await.unwrap();
    assert_eq!(ids(&p.list("u1").await.unwrap()), ["c2"]);
}

pub async fn entries_expire_without_refresh(p: &dyn PresenceRegistry) {
    let ttl = p.ttl();
    p.register("u1", endpoint("c1", "n1")).await.unwrap();
    tokio::time::sleep(ttl / 3).await;
    assert_eq!(ids(&p.list("u1").await.unwrap()), ["c1"], "still live inside the TTL");
    tokio::time::sleep(ttl + Duration::from_millis(100)).await;
    assert!(p.list("u1").await.unwrap().is_empty(), "gone once the TTL passed");
}

pub async fn refresh_keeps_entries_alive(p: &dyn PresenceRegistry) {
    let ttl = p.ttl();
    p.register("u1", endpoint("kept", "n1")).await.unwrap();
    p.register("u1", endpoint("dropped", "n2")).await.unwrap();
    p.register("u2", endpoint("kept2", "n1")).await.unwrap();
    let keys = [
        EndpointKey { user_id: "u1".into(), conn_id: "kept".into() },
        EndpointKey { user_id: "u2".into(), conn_id: "kept2".into() },
    ];
    // Refresh node n1's endpoints in one batch, three times across more than a TTL.
    for _ in 0..3 {
        tokio::time::sleep(ttl / 2).await;
        assert!(p.refresh(&keys).await.unwrap().is_empty(), "all still listed");
    }
    assert_eq!(ids(&p.list("u1").await.unwrap()), ["kept"]);
    assert_eq!(ids(&p.list("u2").await.unwrap()), ["kept2"]);
}

pub async fn a_late_refresh_does_not_resurrect(p: &dyn PresenceRegistry) {
    let ttl = p.ttl();
    p.register("u1", endpoint("late", "n1")).await.unwrap();
    tokio::time::sleep(ttl + Duration::from_millis(100)).await;
    // Its node was silent past the TTL (as a killed node is): a refresh now must not bring it
    // back, and says it is gone so a node still holding it can register it again.
    let late = EndpointKey { user_id: "u1".into(), conn_id: "late".into() };
    let never = EndpointKey { user_id: "u9".into(), conn_id: "never".into() };
    let mut missing = p.refresh(&[late.clone(), never.clone()]).await.unwrap();
    missing.sort_by_key(|k| (k.user_id.clone(), k.conn_id.clone()));
    assert_eq!(missing, vec![late, never]);
    assert!(p.list("u1").await.unwrap().is_empty());
}

/// Ids a key encoding could confuse (a brace forces a hex form that starts with `#`).
pub async fn look_alike_user_ids_are_isolated(p: &dyn PresenceRegistry) {
    let users = ["{x}", "#7b787d", "A", "#41", "#team"];
    for (i, u) in users.iter().enumerate() {
        p.register(u, endpoint(&format!("c{i}"), "n1")).await.unwrap();
    }
    for (i, u) in users.iter().enumerate() {
        let want = format!("c{i}");
        assert_eq!(ids(&p.list(u).await.unwrap()), vec![want.as_str()], "{u:?}");
    }
}
