//! Flow: orchestration that talks to the user (`Ui`). It runs the domain (plan, restore,
//! compare) and tells people what happened, asking them where a decision is theirs: the
//! guard around git, snapshot and report, the restore offer, the hook entry points.
//! Below commands, above the domain.

pub(crate) mod context;
pub(crate) mod guard;
pub(crate) mod hook_actions;
pub(crate) mod offer;
pub(crate) mod outside_git;
pub(crate) mod pre_write_guard;
pub(crate) mod remote;
pub(crate) mod snapshot;

pub(crate) use context::{Context, Place, command_line};
