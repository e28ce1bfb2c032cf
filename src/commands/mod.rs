//! One file per subcommand: each adapts its clap arguments to the flow and domain layers
//! below and prints the result (`pub fn run(ui, ctx, args)`).

pub mod config;
pub mod demo;
pub mod diff;
pub mod export;
pub mod hook;
pub mod import_table;
pub mod init;
pub mod install;
pub mod log;
pub mod prune;
pub mod restore;
pub mod schedule;
pub mod show;
pub mod snapshot;
pub mod status;
pub mod verify;
