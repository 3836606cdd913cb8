//! A full disk under the embedded store and outbox: a passing condition, retried, never a turn
//! set aside for good; once space is back the same pool writes again. The disk is a real,
//! small tmpfs (mounting needs root, which CI has; elsewhere the test says it did not run,
//! and fails under CI=true).

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;

use store_client::{
    AsideFilter, EmbeddedOutbox, EmbeddedStore, Outbox, PutOutcome, TurnStore, contract,
};
use support::unique;

/// A tmpfs of `kib` KiB, unmounted on drop.
struct SmallDisk(PathBuf);

impl SmallDisk {
    fn mount(kib: u32) -> Option<SmallDisk> {
        let dir = std::env::temp_dir().join(unique("small-disk"));
        std::fs::create_dir_all(&dir).unwrap();
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={kib}k"), "tmpfs"])
            .arg(&dir)
            .status()
            .is_ok_and(|s| s.success());
        if ok {
            return Some(SmallDisk(dir));
        }
        assert!(std::env::var("CI").is_err(), "CI must be able to mount a tmpfs (root)");
        eprintln!("SKIPPED: cannot mount a tmpfs here (not root?); the disk-full test did not run");
        None
    }

    /// Fills what is left with a file; returns its path.
    fn fill(&self) -> PathBuf {
        use std::io::Write;
        let path = self.0.join("filler");
        let mut f = std::fs::File::create(&path).unwrap();
        let block = vec![7u8; 4096];
        while f.write_all(&block).is_ok() {}
        let _ = f.sync_all();
        path
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn big_turn(id: &str, at: i64) -> store_client::FinalTurn {
    let mut t = contract::turn(id, "full", "u", at);
    t.turn.text = "x".repeat(64 * 1024);
    t
}

async fn free(filler: &Path) {
    std::fs::remove_file(filler).unwrap();
}

#[tokio::test]
async fn a_full_disk_is_retryable_and_the_store_writes_again_once_space_is_back() {
    let Some(disk) = SmallDisk::mount(1024) else { return };
    let store = EmbeddedStore::open(&disk.0).await.unwrap();
    assert_eq!(
        store.put(&contract::turn("before", "full", "u", 1)).await.unwrap(),
        PutOutcome::Inserted
    );
    let filler = disk.fill();
    for i in 0..6 {
        let e = store.put(&big_turn(&format!("full-{i}"), 10 + i)).await.unwrap_err();
        assert!(e.is_retryable(), "a full disk passes; attempt {i} said: {e}");
    }
    free(&filler).await;
    for i in 0..6 {
        let outcome = store.put(&big_turn(&format!("full-{i}"), 10 + i)).await;
        assert_eq!(outcome.unwrap(), PutOutcome::Inserted, "turn {i} once space is back");
    }
    assert_eq!(store.page("full", None, 10, None).await.unwrap().turns.len(), 7);
}

#[tokio::test]
async fn the_outbox_on_a_full_disk_refuses_for_now_and_takes_turns_again_after() {
    let Some(disk) = SmallDisk::mount(1024) else { return };
    let outbox = EmbeddedOutbox::open(&disk.0).await.unwrap();
    let filler = disk.fill();
    let mut refused = 0;
    for i in 0..6 {
        if let Err(e) = outbox.enqueue(&big_turn(&format!("ob-{i}"), i)).await {
            assert!(e.is_retryable(), "{e}");
            refused += 1;
        }
    }
    assert!(refused > 0, "the disk was full");
    free(&filler).await;
    for i in 0..6 {
        outbox.enqueue(&big_turn(&format!("ob-{i}"), i)).await.unwrap();
    }
    assert_eq!(outbox.stats().await.unwrap().depth, 6);
}

#[tokio::test]
async fn entries_set_aside_for_a_passing_reason_go_back_in_line_and_refusals_stay() {
    let dir = std::env::temp_dir().join(unique("aside"));
    let outbox = EmbeddedOutbox::open(&dir).await.unwrap();
    for id in ["sa-full", "sa-depth", "sa-conflict"] {
        outbox.enqueue(&contract::turn(id, "c", "u", 1)).await.unwrap();
    }
    outbox.set_aside("sa-full", "store error: database or disk is full").await.unwrap();
    outbox
        .set_aside(
            "sa-depth",
            "store error: attempted to call begin_with at non-zero transaction depth",
        )
        .await
        .unwrap();
    outbox
        .set_aside("sa-conflict", "turn \"sa-conflict\" is stored already with different content")
        .await
        .unwrap();
    let listed = outbox.set_aside_entries(10).await.unwrap();
    assert_eq!(listed.len(), 3);
    assert!(listed.iter().all(|e| e.user_id == "u"));
    assert_eq!(outbox.stats().await.unwrap().depth, 0);
    drop(outbox);

    let outbox = EmbeddedOutbox::open(&dir).await.unwrap();
    assert_eq!(outbox.retry_set_aside(&AsideFilter::Transient).await.unwrap(), 2);
    let due: Vec<String> = outbox
        .claim(10, std::time::Duration::ZERO)
        .await
        .unwrap()
        .into_iter()
        .map(|p| p.item.key())
        .collect();
    assert_eq!(due.len(), 2);
    assert!(due.contains(&"sa-full".to_string()) && due.contains(&"sa-depth".to_string()));
    let left = outbox.set_aside_entries(10).await.unwrap();
    assert_eq!(left.iter().map(|e| e.turn_id.as_str()).collect::<Vec<_>>(), ["sa-conflict"]);
    let ids = AsideFilter::Ids(vec!["sa-conflict".into()]);
    assert_eq!(outbox.retry_set_aside(&ids).await.unwrap(), 1, "an operator's retry");
    assert_eq!(
        outbox.stats().await.unwrap(),
        store_client::OutboxStats { depth: 3, set_aside: 0, ..outbox.stats().await.unwrap() }
    );
    let _ = std::fs::remove_dir_all(dir);
}
