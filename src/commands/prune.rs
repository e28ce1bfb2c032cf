//! `dbguard prune [--keep-… N] [--dry-run]`: delete snapshots a retention policy does not
//! keep (see `retention.rs`), then the chunks no snapshot refers to any more.

use std::collections::HashSet;

use crate::clock;
use crate::config::RetentionConfig;
use crate::error::CommandError;
use crate::flow::Context;
use crate::flow::remote as remote_flow;
use crate::flow::snapshot::occasion;
use crate::remote::RemoteError;
use crate::retention::{self, Candidate, Policy};
use crate::store::replica::{self, RemoteLock, ReplicaError};
use crate::store::{SnapshotInfo, Store};
use crate::ui::{self, Ui, json};
use crate::ui::{age, local_time};

#[derive(Debug, clap::Args)]
#[command(after_long_help = "Examples:
  dbguard prune                          apply the configured policy (default: keep the last 10)
  dbguard prune --keep-last 3 --dry-run  show what would go
  dbguard prune --keep-daily 7 --keep-weekly 4 --keep-within 2d
  dbguard prune --remote backup          the remote's copy follows

Each database path is its own group; the newest snapshot of every path is always kept,
and a snapshot kept by any rule is kept. Without flags the policy comes from the config
(`dbguard config`: retention.keep_* in .dbguard.toml or dbguard.keep* in git config).
DURATION is e.g. 8h, 30d, 2w, 1y2m3d4h.")]
pub(crate) struct Args {
    /// Keep the N newest snapshots of each database.
    #[arg(long, value_name = "N")]
    pub(crate) keep_last: Option<u32>,
    /// Keep the newest snapshot in each of the last N hours that have one.
    #[arg(long, value_name = "N")]
    pub(crate) keep_hourly: Option<u32>,
    /// Keep the newest snapshot in each of the last N days that have one.
    #[arg(long, value_name = "N")]
    pub(crate) keep_daily: Option<u32>,
    /// Keep the newest snapshot in each of the last N weeks that have one.
    #[arg(long, value_name = "N")]
    pub(crate) keep_weekly: Option<u32>,
    /// Keep the newest snapshot in each of the last N months that have one.
    #[arg(long, value_name = "N")]
    pub(crate) keep_monthly: Option<u32>,
    /// Keep every snapshot newer than DURATION (e.g. 8h, 30d, 2w).
    #[arg(long, value_name = "DURATION")]
    pub(crate) keep_within: Option<String>,
    /// Show what would be removed; remove nothing.
    #[arg(long)]
    pub(crate) dry_run: bool,
    /// Then apply the same to this store's copy on a remote: push, and delete there what
    /// this store no longer has (other stores' snapshots on it stay).
    #[arg(long, value_name = "NAME")]
    pub(crate) remote: Option<String>,
}

fn parse_within(text: &str) -> Result<chrono::Duration, CommandError> {
    retention::parse_duration(text).map_err(|e| {
        CommandError::from_source(e).hint("--keep-within takes e.g. 8h, 30d, 2w or 1y2m3d4h")
    })
}

/// The policy from the flags when any is given, else from the config.
fn policy(ctx: &Context, args: &Args) -> Result<Policy, CommandError> {
    let from_flags = args.keep_last.is_some()
        || args.keep_hourly.is_some()
        || args.keep_daily.is_some()
        || args.keep_weekly.is_some()
        || args.keep_monthly.is_some()
        || args.keep_within.is_some();
    let config = if from_flags {
        RetentionConfig {
            keep_last: args.keep_last,
            keep_hourly: args.keep_hourly,
            keep_daily: args.keep_daily,
            keep_weekly: args.keep_weekly,
            keep_monthly: args.keep_monthly,
            keep_within: args.keep_within.clone(),
        }
    } else {
        ctx.settings.retention.value.clone()
    };
    let keep_within = match &config.keep_within {
        Some(text) => Some(parse_within(text).map_err(|e| {
            if from_flags {
                e
            } else {
                e.hint("fix retention.keep_within in the config (`dbguard config` shows where it is set)")
            }
        })?),
        None => None,
    };
    Ok(Policy {
        keep_last: config.keep_last,
        keep_hourly: config.keep_hourly,
        keep_daily: config.keep_daily,
        keep_weekly: config.keep_weekly,
        keep_monthly: config.keep_monthly,
        keep_within,
    })
}

pub(crate) fn run(ui: &Ui, ctx: &Context, args: &Args) -> Result<(), CommandError> {
    let policy = policy(ctx, args)?;
    // Deciding only reads (a dry run works on a read-only store too); the writer lock is
    // taken only to delete, and then a step at a time, so that a git command's snapshot
    // waits for one step at most.
    let Some(store) = ctx.existing_store()? else {
        ui.status("there are no snapshots in this repository yet; nothing to prune");
        if ui.json {
            json::print(ui, &empty_report(args.dry_run));
        }
        return Ok(());
    };
    let worktree = ctx.worktree_key();
    let snapshots = store.snapshots(Some(&worktree), None, None)?;
    let candidates: Vec<Candidate> = snapshots
        .iter()
        .map(|s| Candidate {
            id: s.id,
            path: s.path.clone(),
            // `<store id>/<snapshot id>` there: grouped by the store that took it.
            origin: s
                .origin
                .as_deref()
                .map(|origin| origin.split('/').next().unwrap_or(origin).to_string()),
            // A snapshot a later operation found unchanged holds the state of then too.
            created_at: s.last_seen(),
        })
        .collect();
    if policy.is_empty() {
        ui.warn("no retention rule is set, so every snapshot is kept");
    }
    let decision = retention::apply(&policy, &candidates, clock::now());
    for id in &decision.remove {
        if let Some(s) = snapshots.iter().find(|s| s.id == *id) {
            ui.status(&removal_line(s, args.dry_run));
        }
    }
    let (chunks_removed, bytes_freed) = if args.dry_run {
        would_free(&store, &decision.remove)?
    } else {
        drop(store);
        let Some(mut writer) = ctx.existing_store_for_writing()? else {
            return Err(
                CommandError::new("the snapshot store disappeared while pruning")
                    .hint("`dbguard config` shows where the store is"),
            );
        };
        if !decision.remove.is_empty() {
            writer.delete_snapshots(&decision.remove)?;
        }
        drop(writer);
        Store::reclaim_space_in_steps(&ctx.settings.store.value)?
    };
    let removed = decision.remove.len();
    let kept = decision.keep.len();
    let verb = if args.dry_run {
        "would remove"
    } else {
        "removed"
    };
    let free_verb = if args.dry_run { "would free" } else { "freed" };
    ui.status(&format!(
        "{verb} {removed} snapshot{}, kept {kept}; {free_verb} {} ({chunks_removed} chunk{})",
        if removed == 1 { "" } else { "s" },
        ui::bytes(bytes_freed),
        if chunks_removed == 1 { "" } else { "s" },
    ));
    let remote = match &args.remote {
        Some(name) => Some(prune_remote(ui, ctx, name, args.dry_run, &decision.remove)?),
        None => None,
    };
    if ui.json {
        let brief = |id: &i64| {
            snapshots
                .iter()
                .find(|s| s.id == *id)
                .map(json::SnapshotBrief::from)
        };
        let report = json::Prune {
            dry_run: args.dry_run,
            removed: decision.remove.iter().filter_map(brief).collect(),
            kept: decision
                .keep
                .iter()
                .filter_map(|(id, reasons)| {
                    Some(json::Kept {
                        snapshot: brief(id)?,
                        reasons: reasons.iter().map(|r| r.to_string()).collect(),
                    })
                })
                .collect(),
            chunks_removed,
            freed_bytes: bytes_freed,
            remote,
        };
        json::print(ui, &report);
    }
    Ok(())
}

/// The remote's copy of this store follows the local prune: push (so that repacked
/// packs are there), then delete what the store no longer has.
fn prune_remote(
    ui: &Ui,
    ctx: &Context,
    name: &str,
    dry_run: bool,
    removed: &[i64],
) -> Result<json::RemotePrune, CommandError> {
    let remote = remote_flow::resolve(ctx, Some(name))?;
    let root = &ctx.settings.store.value;
    let lock = RemoteLock::take(root, true)?;
    let Some(plan) = remote_flow::plan_at(root)? else {
        return Ok(json::RemotePrune::new(remote, &Default::default()));
    };
    let client = remote_flow::connect(remote, !dry_run)?;
    if !dry_run {
        let pushed = remote_flow::push(ui, &client, &plan, &lock)?;
        ui.status(&remote_flow::describe(&pushed, remote));
    }
    let report =
        replica::prune_remote(&client, &plan, &lock, dry_run, removed).map_err(|e| match e {
            // Pushing needs no right to delete (and should not have it): pruning does.
            ReplicaError::Remote(refused @ RemoteError::Refused { .. }) => {
                CommandError::from_source(refused).hint(format!(
                    "prune --remote deletes objects: run it with credentials that may delete \
                     (e.g. AWS_PROFILE=owner dbguard prune --remote {name}); push needs no such right"
                ))
            }
            other => other.into(),
        })?;
    let verb = if dry_run { "would delete" } else { "deleted" };
    ui.status(&format!(
        "{}: {verb} {} and {} ({}) that this store no longer has{}",
        remote.name,
        remote_flow::plural(report.snapshots.len(), "snapshot", "snapshots"),
        remote_flow::plural(report.packs, "pack", "packs"),
        ui::bytes(report.bytes),
        if dry_run {
            "; the packs this prune frees here go from there too when it runs"
        } else {
            ""
        }
    ));
    if report.kept_until_pushed > 0 {
        ui.warn(&format!(
            "{}: kept {} until every pack this store uses is pushed (`dbguard push {}`)",
            remote.name,
            remote_flow::plural(report.kept_until_pushed, "old pack", "old packs"),
            remote.name
        ));
    }
    Ok(json::RemotePrune::new(remote, &report))
}

/// Enough to tell snapshots apart before they are gone: rows, when, age, what each was
/// taken before, and the later operations that refer to it (their record goes with it).
fn removal_line(s: &SnapshotInfo, dry_run: bool) -> String {
    let mut line = format!(
        "{} #{} {}: {}, {} ({}), {}",
        if dry_run { "would remove" } else { "remove" },
        s.id,
        s.path,
        ui::rows(s.census.total_rows()),
        local_time(s.created_at),
        age(s.created_at),
        occasion(s)
    );
    if let Some(last) = s.unchanged.last() {
        let more = s.unchanged.len() - 1;
        line.push_str(&format!(
            "; also the state before {}{} ({})",
            last.operation.describe(),
            match more {
                0 => String::new(),
                1 => " and 1 earlier command".into(),
                n => format!(" and {n} earlier commands"),
            },
            age(last.created_at)
        ));
    }
    line
}

fn empty_report(dry_run: bool) -> json::Prune {
    json::Prune {
        dry_run,
        removed: Vec::new(),
        kept: Vec::new(),
        chunks_removed: 0,
        freed_bytes: 0,
        remote: None,
    }
}

/// (chunks, bytes) that removing `remove` would free: what no image of any remaining
/// snapshot (of any worktree sharing the store) uses, plus what is unused already.
fn would_free(store: &Store, remove: &[i64]) -> Result<(usize, u64), CommandError> {
    let removed: HashSet<i64> = remove.iter().copied().collect();
    let all = store.snapshots(None, None, None)?;
    let remaining_images: HashSet<i64> = all
        .iter()
        .filter(|s| !removed.contains(&s.id))
        .map(|s| s.image_id)
        .collect();
    let gone: HashSet<i64> = all
        .iter()
        .map(|s| s.image_id)
        .filter(|image| !remaining_images.contains(image))
        .collect();
    Ok(store.reclaimable(&gone)?)
}
