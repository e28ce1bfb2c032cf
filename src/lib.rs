//! dbguard: snapshots SQLite and DuckDB files before git overwrites or deletes them,
//! and restores them after: detect → snapshot (+ census) → store → compare → restore.
//!
//! # The house
//! Four layers (commands → flow → domain → base); a module imports only from its own
//! layer or below. The one map of them, with the store format and the verified facts
//! about git, SQLite and DuckDB, is `docs/architecture.md`; `tests/it/layers.rs` reads its
//! layer table and fails on an import that points up.

#![deny(unsafe_code)]

pub mod cli;
pub(crate) mod clock;
pub(crate) mod commands;
pub(crate) mod compare;
pub(crate) mod config;
pub(crate) mod db;
pub(crate) mod env;
pub(crate) mod error;
pub(crate) mod export;
pub(crate) mod flow;
#[doc(hidden)]
pub mod fsmonitor;
pub(crate) mod git;
pub(crate) mod hook_files;
pub(crate) mod import;
pub(crate) mod plan;
pub(crate) mod remote;
pub(crate) mod restore;
pub(crate) mod retention;
pub(crate) mod scan;
pub(crate) mod store;
#[doc(hidden)]
pub mod testing;
pub(crate) mod text;
pub(crate) mod timing;
pub(crate) mod ui;
