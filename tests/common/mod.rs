//! The shared test harness lives in the library (`src/testing.rs`), so that unit and
//! integration tests use one; this re-exports it for the integration tests.
#![allow(unused_imports)]

pub use dbguard::testing::*;
