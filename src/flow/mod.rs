//! Orchestration that talks to the user: it runs the domain (plan, restore, compare) and
//! tells people what happened through `Ui`, asking them where a decision is theirs.

pub mod offer;
