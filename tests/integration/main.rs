//! The one integration test binary: SQL logic tests over a custval session,
//! and end-to-end tests of the real `custval` binary on temporary folders.

#[cfg(feature = "cluster")]
mod cluster;
mod common;
mod e2e;
mod hostile;
mod models;
mod sqllogic;
mod storage;
