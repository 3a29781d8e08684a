#![allow(unreachable_pub)] // Helpers are `pub` for sibling test modules of this one binary.

//! Pacing judged from the trunk's side: sipp timestamps the INVITEs it receives. These tests
//! measure timing, so they run in their own binary (cargo runs test binaries one at a time),
//! one at a time (`serial`), on a multi-threaded runtime as in production: a starved machine
//! would bunch up the receiver's timestamps, not our sends.

mod batches;
mod burst;
#[path = "../api/helpers.rs"]
mod helpers;
#[path = "../sip/sipp.rs"]
mod sipp;

/// Held for the whole of each test, so timing tests never overlap.
pub async fn serial() -> tokio::sync::MutexGuard<'static, ()> {
    static LOCK: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    LOCK.lock().await
}
