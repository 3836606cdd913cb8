//! PROTOCOL.md v1.1, §Notifications, on the real binary: preferences (validation naming the
//! field, merge patch, who may read and write them, the same on every node) and every
//! disposition rule, seen both in the 202 and in what a connected device receives.

mod common;

use common::pg::{DropSchema, database_url, unique};
use common::redis_server::TestRedis;
use common::*;
use serde_json::{Value, json};
use wire::EventBody;

async fn put(gw: &TestGateway, user: &str, token: &str, doc: Value) -> (u16, Value) {
    let r = gw
        .http
        .put(gw.url(&format!("/v1/users/{user}/preferences")))
        .bearer_auth(token)
        .json(&doc)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

async fn patch(gw: &TestGateway, user: &str, doc: Value) -> (u16, Value) {
    let r = gw
        .http
        .patch(gw.url(&format!("/v1/users/{user}/preferences")))
        .bearer_auth(token(user, None))
        .header("content-type", "application/merge-patch+json")
        .body(doc.to_string())
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

async fn send(gw: &TestGateway, user: &str, category: &str, priority: &str, title: &str) -> Value {
    let body = json!({"user_id": user, "category": category, "priority": priority, "title": title, "body": "b"});
    let (s, reply) = gw.post_json("/v1/notifications", &producer_token(), &body).await;
    assert_eq!(s, 202, "{reply}");
    reply
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn preferences_are_validated_merged_and_private() {
    let gw = TestGateway::start(&[]);
    let (s, doc) = gw.get_json("/v1/users/ann/preferences", &token("ann", None)).await;
    assert_eq!(s, 200);
    assert_eq!(
        doc,
        json!({"default":{"enabled":true,"min_priority":"low","push":true},"categories":{},
               "quiet_hours":null,"mute_until":null,"budget_per_hour":null})
    );
    let bad = json!({"quiet_hours": {"tz": "Mars/Olympus", "from": "22:00", "until": "07:00"}});
    let (s, err) = put(&gw, "ann", &token("ann", None), bad).await;
    assert_eq!(s, 400);
    assert_eq!(err["error"]["code"], "invalid_preferences");
    assert!(err["error"]["message"].as_str().unwrap().starts_with("quiet_hours.tz"), "{err}");
    let (s, _) = put(&gw, "ann", &token("bob", None), json!({})).await;
    assert_eq!(s, 403, "another user's preferences");
    let (s, _) = gw.get_json("/v1/users/ann/preferences", &token("bob", None)).await;
    assert_eq!(s, 403);

    let (s, doc) = patch(
        &gw,
        "ann",
        json!({"categories": {"mentions": {"min_priority": "high"}}, "budget_per_hour": 5}),
    )
    .await;
    assert_eq!(s, 200, "{doc}");
    assert_eq!(doc["categories"]["mentions"], json!({"min_priority": "high"}));
    let (s, doc) = patch(
        &gw,
        "ann",
        json!({"budget_per_hour": null, "categories": {"mentions": {"push": false}}}),
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(doc["budget_per_hour"], Value::Null, "null resets to the default");
    assert_eq!(
        doc["categories"]["mentions"],
        json!({"min_priority": "high", "push": false}),
        "objects merge"
    );
    let (s, err) =
        patch(&gw, "ann", json!({"categories": {"mentions": {"min_priority": "urgent"}}})).await;
    assert_eq!(s, 400);
    assert!(
        err["error"]["message"].as_str().unwrap().starts_with("categories.mentions.min_priority")
    );
    let (_, now) = gw.get_json("/v1/users/ann/preferences", &token("ann", None)).await;
    assert_eq!(
        now["categories"]["mentions"]["min_priority"], "high",
        "a refused patch stores nothing"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_disposition_rule_in_order() {
    let gw = TestGateway::start(&[]);
    let mut device = gw.device("cy", "").await;
    let doc = json!({"categories": {"off": {"enabled": false}, "picky": {"min_priority": "high"}},
                     "budget_per_hour": 2});
    assert_eq!(put(&gw, "cy", &token("cy", None), doc).await.0, 200);

    let d = |r: &Value| r["disposition"].as_str().unwrap().to_owned();
    let r = send(&gw, "cy", "off", "high", "suppressed").await;
    assert_eq!((d(&r), r["seq"].clone()), ("suppressed".into(), Value::Null));
    assert_eq!(
        d(&send(&gw, "cy", "off", "critical", "critical-1").await),
        "delivered",
        "critical skips every rule"
    );
    assert_eq!(d(&send(&gw, "cy", "picky", "normal", "held").await), "held");
    assert_eq!(d(&send(&gw, "cy", "news", "normal", "budget-1").await), "delivered");
    assert_eq!(d(&send(&gw, "cy", "news", "low", "budget-2").await), "delivered");
    assert_eq!(d(&send(&gw, "cy", "news", "normal", "over").await), "digested");
    assert_eq!(
        d(&send(&gw, "cy", "news", "high", "high-1").await),
        "delivered",
        "high is not budgeted"
    );

    // Muted: held, unless critical.
    let mute = json!({"mute_until": "2999-01-01T00:00:00Z"});
    assert_eq!(patch(&gw, "cy", mute).await.0, 200);
    assert_eq!(d(&send(&gw, "cy", "news", "high", "muted").await), "held");
    assert_eq!(d(&send(&gw, "cy", "news", "critical", "critical-2").await), "delivered");

    // Quiet hours around now in a zone far from UTC, the window spanning midnight when now is
    // late in the day there.
    let tz = "Pacific/Auckland";
    let now = jiff::Timestamp::now().in_tz(tz).unwrap();
    let from = now.checked_sub(jiff::SignedDuration::from_hours(2)).unwrap();
    let until = now.checked_add(jiff::SignedDuration::from_hours(2)).unwrap();
    let hm = |z: &jiff::ZonedDateTime| format!("{:02}:{:02}", z.hour(), z.minute());
    let quiet = json!({"mute_until": null, "quiet_hours": {"tz": tz, "from": hm(&from), "until": hm(&until)}});
    assert_eq!(patch(&gw, "cy", quiet).await.0, 200);
    assert_eq!(d(&send(&gw, "cy", "news", "high", "quiet").await), "held");
    let elsewhere =
        json!({"quiet_hours": {"tz": tz, "from": hm(&until), "until": hm(&from), "days": ["mon"]}});
    assert_eq!(patch(&gw, "cy", elsewhere).await.0, 200);

    // The device received exactly the delivered ones, in order.
    let want = ["critical-1", "budget-1", "budget-2", "high-1", "critical-2"];
    for title in want {
        match device.event().await.body {
            EventBody::Notification { title: t, .. } => assert_eq!(t, title),
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(
        gw.metric("gateway_notification_dispositions_total{disposition=\"held\"}").await,
        3.0
    );
    let critical = "gateway_notifications_by_priority_total{priority=\"critical\"}";
    assert_eq!(gw.metric(critical).await, 2.0);
    assert_eq!(gw.metric("gateway_notifications_by_category_total{category=\"news\"}").await, 7.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn preferences_apply_on_every_redis_node_at_once() {
    let redis = TestRedis::start();
    let (url, schema) = (database_url(), unique("gwprefs"));
    let _drop = DropSchema { url: url.clone(), schema: schema.clone() };
    let prefix = format!("np{:x}", rand::random::<u32>());
    let env = [
        ("GATEWAY_REDIS_URL", redis.url.as_str()),
        ("GATEWAY_REDIS_PREFIX", prefix.as_str()),
        ("GATEWAY_STORE_URL", url.as_str()),
        ("GATEWAY_STORE_SCHEMA", schema.as_str()),
    ];
    let (a, b) = (TestGateway::start(&env), TestGateway::start(&env));
    assert_eq!(send(&b, "dee", "ops", "normal", "before").await["disposition"], "delivered");
    let doc = json!({"categories": {"ops": {"enabled": false}}});
    assert_eq!(put(&a, "dee", &token("dee", None), doc).await.0, 200);
    assert_eq!(send(&b, "dee", "ops", "normal", "after").await["disposition"], "suppressed");
    let (_, seen) = b.get_json("/v1/users/dee/preferences", &token("dee", None)).await;
    assert_eq!(seen["categories"]["ops"]["enabled"], false);
}

/// The next digest a device receives within `secs`, skipping other events.
async fn maybe_digest(device: &mut WsClient, secs: u64) -> Option<EventBody> {
    let wait = async {
        loop {
            let e = device.event().await;
            if matches!(e.body, EventBody::NotificationDigest { .. }) {
                return e.body;
            }
        }
    };
    tokio::time::timeout(std::time::Duration::from_secs(secs), wait).await.ok()
}

async fn next_digest(device: &mut WsClient, secs: u64) -> EventBody {
    maybe_digest(device, secs).await.expect("a digest in time")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_window_is_announced_once_when_it_ends() {
    let gw = TestGateway::start(&[
        ("GATEWAY_NOTIFY_BUDGET_PER_HOUR", "1"),
        ("GATEWAY_NOTIFY_BUDGET_WINDOW_MS", "2000"),
    ]);
    let mut device = gw.device("dg", "").await;
    assert_eq!(send(&gw, "dg", "news", "normal", "fits").await["disposition"], "delivered");
    let a = send(&gw, "dg", "news", "normal", "over-1").await;
    let b = send(&gw, "dg", "sport", "low", "over-2").await;
    assert_eq!(
        (a["disposition"].as_str(), b["disposition"].as_str()),
        (Some("digested"), Some("digested"))
    );
    match next_digest(&mut device, 15).await {
        EventBody::NotificationDigest { count, ids, categories, reason, .. } => {
            assert_eq!((count, reason.as_str()), (2, "budget"));
            assert_eq!(ids, [a["id"].as_str().unwrap(), b["id"].as_str().unwrap()]);
            assert_eq!(categories.get("sport"), Some(&1));
        }
        other => panic!("{other:?}"),
    }
    // Muted for two seconds: held, then one digest.
    let until = jiff::Timestamp::now().checked_add(jiff::SignedDuration::from_secs(2)).unwrap();
    assert_eq!(patch(&gw, "dg", json!({"mute_until": until.to_string()})).await.0, 200);
    assert_eq!(send(&gw, "dg", "news", "high", "muted").await["disposition"], "held");
    assert!(
        matches!(next_digest(&mut device, 15).await, EventBody::NotificationDigest { count: 1, ref reason, .. } if reason == "muted")
    );
    assert!(maybe_digest(&mut device, 6).await.is_none(), "one digest per window");
    assert_eq!(gw.metric("gateway_notification_digests_total").await, 2.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_redis_nodes_publish_a_digest_once_even_when_the_node_that_held_it_is_gone() {
    let redis = TestRedis::start();
    let (url, schema) = (database_url(), unique("gwdigest"));
    let _drop = DropSchema { url: url.clone(), schema: schema.clone() };
    let prefix = format!("dg{:x}", rand::random::<u32>());
    let env = [
        ("GATEWAY_REDIS_URL", redis.url.as_str()),
        ("GATEWAY_REDIS_PREFIX", prefix.as_str()),
        ("GATEWAY_STORE_URL", url.as_str()),
        ("GATEWAY_STORE_SCHEMA", schema.as_str()),
        ("GATEWAY_NOTIFY_BUDGET_PER_HOUR", "1"),
        ("GATEWAY_NOTIFY_BUDGET_WINDOW_MS", "3000"),
    ];
    let (mut a, b, c) =
        (TestGateway::start(&env), TestGateway::start(&env), TestGateway::start(&env));
    let (mut on_b, mut on_c) = (b.ws("dr", "").await, c.ws("dr", "").await);
    on_b.hello().await;
    on_c.hello().await;
    assert_eq!(send(&a, "dr", "n", "normal", "fits").await["disposition"], "delivered");
    assert_eq!(send(&a, "dr", "n", "normal", "over").await["disposition"], "digested");
    a.signal("KILL");
    a.wait_exit(std::time::Duration::from_secs(5));
    for device in [&mut on_b, &mut on_c] {
        assert!(matches!(
            next_digest(device, 20).await,
            EventBody::NotificationDigest { count: 1, .. }
        ));
    }
    assert!(maybe_digest(&mut on_b, 6).await.is_none(), "published once, though two nodes swept");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lifting_a_mute_brings_its_digest_forward() {
    let gw = TestGateway::start(&[]);
    let mut device = gw.device("ml", "").await;
    let hour = jiff::Timestamp::now().checked_add(jiff::SignedDuration::from_hours(1)).unwrap();
    assert_eq!(patch(&gw, "ml", json!({"mute_until": hour.to_string()})).await.0, 200);
    assert_eq!(send(&gw, "ml", "news", "high", "muted").await["disposition"], "held");
    assert_eq!(patch(&gw, "ml", json!({"mute_until": null})).await.0, 200);
    match next_digest(&mut device, 15).await {
        EventBody::NotificationDigest { count, reason, until, .. } => {
            assert_eq!((count, reason.as_str()), (1, "muted"));
            let until: jiff::Timestamp = until.parse().unwrap();
            assert!(until < hour, "the window ended when the mute was lifted: {until}");
        }
        other => panic!("{other:?}"),
    }
}
