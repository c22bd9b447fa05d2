//! Rebuild when a migration is added, removed or changed, so the embedded
//! migrations never go stale.
fn main() {
    println!("cargo:rerun-if-changed=../../migrations");
}
