//! dbguard: snapshots SQLite and DuckDB files before git overwrites or deletes them,
//! and restores them after. See `ARCHITECTURE` notes in the README for the data flow:
//! detect → snapshot (+ census) → store → compare → restore.

#![deny(unsafe_code)]

pub mod cli;
pub mod clock;
pub mod commands;
pub mod compare;
pub mod config;
pub mod db;
pub mod error;
pub mod export;
pub mod guard;
pub mod hooks;
pub mod import;
pub mod plan;
pub mod repo;
pub mod restore;
pub mod retention;
pub mod scan;
pub mod store;
pub mod ui;
