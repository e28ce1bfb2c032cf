//! dbguard: snapshots SQLite and DuckDB files before git overwrites or deletes them,
//! and restores them after. See `ARCHITECTURE` notes in the README for the data flow:
//! detect → snapshot (+ census) → store → compare → restore.

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
pub(crate) mod git;
pub(crate) mod hooks;
pub(crate) mod import;
pub(crate) mod plan;
pub(crate) mod restore;
pub(crate) mod retention;
pub(crate) mod scan;
pub(crate) mod store;
#[doc(hidden)]
pub mod testing;
pub(crate) mod ui;
