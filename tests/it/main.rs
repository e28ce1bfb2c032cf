//! The integration tests, one binary: each module was a file of its own under `tests/`,
//! and each linked DuckDB, Arrow and Parquet again (minutes of every CI run on two
//! cores). The shared harness is `dbguard::testing` (`src/testing.rs`).

mod backup;
mod bad_input;
mod duckdb;
mod fail_closed;
mod fsmonitor;
mod guard;
mod hook_planning;
mod hooks;
mod hostile;
mod json_schema;
mod layers;
mod nogit;
mod output;
mod packs;
mod peers;
mod remote;
mod remote_crypto;
mod restore;
mod restore_faults;
mod snapshot;
mod status_flags;
mod store_lock;
mod unchanged;
mod watcher;
