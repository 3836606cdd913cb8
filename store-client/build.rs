//! Rebuilds the crate when a migration is added: `sqlx::migrate!` embeds the directories at
//! compile time, and cargo does not otherwise look at them.
fn main() {
    println!("cargo:rerun-if-changed=migrations");
    println!("cargo:rerun-if-changed=outbox-migrations");
}
