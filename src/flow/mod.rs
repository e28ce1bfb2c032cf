//! Flow: orchestration that talks to the user (`Ui`). It runs the domain (plan, restore,
//! compare) and tells people what happened, asking them where a decision is theirs: the
//! guard around git, snapshot and report, the restore offer, the hook entry points.
//! Below commands, above the domain.

pub mod context;
pub mod guard;
pub mod hook;
pub mod offer;
pub mod snapshot;

pub use context::{Context, command_line};
