//! Rebuild when a migration or the Citus distribution step is added,
//! removed or changed, so the embedded SQL never goes stale.
fn main() {
    println!("cargo:rerun-if-changed=../../migrations");
    println!("cargo:rerun-if-changed=../../citus");
}
