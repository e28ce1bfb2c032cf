//! Flow: orchestration that talks to the user (`Ui`) — the guard around git, snapshot and
//! report, the restore offer, the hook entry points. Below commands, above the domain.

pub mod context;
pub mod guard;
pub mod hook;
pub mod snapshot;

pub use context::{Context, command_line};
