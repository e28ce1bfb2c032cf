//! `dbguard verify`: re-read every chunk, check every image against its digest, and
//! check the catalog itself; name every snapshot that damage breaks and the ones that
//! remain restorable.

use std::collections::BTreeMap;

use crate::error::CommandError;
use crate::flow::Context;
use crate::flow::remote::{connect, resolve};
use crate::store::replica::RemoteCheck;
use crate::store::{Problem, SnapshotRef, VerifyReport};
use crate::ui::{self, Ui, json};

#[derive(Debug, clap::Args)]
#[command(after_long_help = "Examples:
  dbguard verify
  dbguard verify --json
  dbguard verify --remote backup   read the whole remote back (every store on it)")]
pub(crate) struct Args {
    /// Check a remote instead: every pack, every chunk, every snapshot record on it.
    #[arg(long, value_name = "NAME")]
    pub(crate) remote: Option<String>,
}

/// "#2, #3" (at most `max` ids, then how many more).
fn ids(snapshots: &[&SnapshotRef], max: usize) -> String {
    let mut text: Vec<String> = snapshots
        .iter()
        .take(max)
        .map(|s| format!("#{}", s.id))
        .collect();
    if snapshots.len() > max {
        text.push(format!("and {} more", snapshots.len() - max));
    }
    text.join(", ")
}

/// One database's snapshots that cannot be restored, and those that can.
type BrokenAndIntact<'a> = (Vec<&'a SnapshotRef>, Vec<&'a SnapshotRef>);

fn plural(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

pub(crate) fn run(ui: &Ui, ctx: &Context, args: &Args) -> Result<(), CommandError> {
    if let Some(name) = &args.remote {
        return verify_remote(ui, ctx, name);
    }
    let Some(mut store) = ctx.existing_store()? else {
        ui.status("no snapshot store yet: nothing to verify");
        if ui.json {
            // Scripts get the same document as for an empty store, not an empty stdout.
            json::print(ui, &json::Verify::from(&VerifyReport::default()));
        }
        return Ok(());
    };
    store.begin_verify()?;
    // A bar with the bytes to re-read, a rate and the time left (a terminal only).
    let bar = ui.progress(store.verify_bytes()?, "verify: re-reading every chunk");
    let report = store.verify(&|done| bar.set_position(done))?;
    bar.finish_and_clear();
    if ui.json {
        json::print(ui, &json::Verify::from(&report));
    } else {
        ui.out(&format!(
            "checked {} images, {} chunks ({}){}",
            report.images,
            report.chunks,
            ui::bytes(report.bytes),
            if report.unreferenced > 0 {
                format!(
                    "; {} unreferenced chunks (`dbguard prune` removes them)",
                    report.unreferenced
                )
            } else {
                String::new()
            }
        ));
    }
    if report.problems.is_empty() {
        if !ui.json {
            ui.out("store ok");
        }
        return Ok(());
    }
    Err(damage_error(ui, ctx, &report))
}

/// `verify --remote NAME`: read everything on the remote back.
fn verify_remote(ui: &Ui, ctx: &Context, name: &str) -> Result<(), CommandError> {
    let remote = resolve(ctx, Some(name))?;
    let client = connect(remote, false)?;
    let check = RemoteCheck::list(&client)?;
    let bar = ui.progress(check.bytes(), "verify: reading the remote back");
    let report = check.run(&client, &|done| bar.set_position(done));
    bar.finish_and_clear();
    let report = report?;
    if ui.json {
        json::print(
            ui,
            &json::RemoteVerify {
                remote: remote.name.clone(),
                url: remote.url.to_string(),
                stores: report.stores,
                snapshots: report.snapshots,
                packs: report.packs,
                checked_bytes: report.bytes,
                unindexed_packs: report.unindexed,
                problems: &report.problems,
                broken: &report.broken,
            },
        );
    } else {
        ui.out(&format!(
            "checked {} from {} on {} ({}): {} ({}){}",
            plural(report.snapshots, "snapshot", "snapshots"),
            plural(report.stores, "store", "stores"),
            remote.name,
            remote.url,
            plural(report.packs, "pack", "packs"),
            ui::bytes(report.bytes),
            if report.unindexed > 0 {
                format!(
                    "; {} left by an interrupted push (`dbguard prune --remote {}` removes this store's)",
                    plural(report.unindexed, "unfinished pack", "unfinished packs"),
                    remote.name
                )
            } else {
                String::new()
            }
        ));
        for problem in &report.problems {
            ui.out(problem);
        }
    }
    if report.problems.is_empty() {
        if !ui.json {
            ui.out("remote ok");
        }
        return Ok(());
    }
    Err(CommandError::new(format!(
        "{} on {} cannot be fetched whole ({})",
        plural(report.broken.len(), "snapshot", "snapshots"),
        remote.name,
        plural(report.problems.len(), "problem", "problems")
    ))
    .hint(format!(
        "`dbguard push {}` from the store that took them uploads what is missing again; the local store (`dbguard verify`) is not affected",
        remote.name
    )))
}

/// Say what is damaged, which snapshots it breaks, per database which ones remain
/// restorable, and what to do.
fn damage_error(ui: &Ui, ctx: &Context, report: &VerifyReport) -> CommandError {
    let here = ctx.worktree_key();
    let name = |s: &SnapshotRef| {
        if s.worktree == here {
            s.path.clone()
        } else {
            format!("{} (worktree {})", s.path, s.worktree)
        }
    };
    // Per database: (broken, restorable), in id order.
    let mut per_path: BTreeMap<(String, String), BrokenAndIntact<'_>> = BTreeMap::new();
    for s in &report.broken {
        per_path
            .entry((s.worktree.clone(), s.path.clone()))
            .or_default()
            .0
            .push(s);
    }
    for s in &report.restorable {
        if let Some(entry) = per_path.get_mut(&(s.worktree.clone(), s.path.clone())) {
            entry.1.push(s);
        }
    }
    if !ui.json {
        for damage in &report.damage {
            let breaks = if damage.snapshots.is_empty() {
                "no snapshot uses it".to_string()
            } else {
                let list: Vec<String> =
                    damage.snapshots.iter().map(|id| format!("#{id}")).collect();
                format!("breaks {}", list.join(", "))
            };
            ui.out(&format!("{}; {breaks}", damage.problem));
        }
        for (broken, restorable) in per_path.values() {
            let first = broken[0];
            ui.out(&format!(
                "{}: cannot restore {}; {}",
                name(first),
                ids(broken, 20),
                if restorable.is_empty() {
                    "no intact snapshot".to_string()
                } else {
                    format!("restorable: {}", ids(restorable, 20))
                }
            ));
        }
    }
    let mut message = format!(
        "the store has {}",
        plural(report.problems.len(), "problem", "problems")
    );
    if !report.broken.is_empty() {
        message.push_str(&format!(
            ": {} cannot be restored",
            plural(report.broken.len(), "snapshot", "snapshots")
        ));
    }
    let mut error = CommandError::new(message);
    // On a terminal the damage lines above name the problems; JSON readers get them here.
    let causes = report
        .problems
        .iter()
        .filter(|p| ui.json || matches!(p, Problem::Catalog(_)));
    for problem in causes.take(20) {
        error = error.cause(problem.to_string());
    }
    for ((worktree, path), (broken, restorable)) in &per_path {
        let in_worktree = if *worktree == here {
            String::new()
        } else {
            format!(" in {worktree}")
        };
        error = error.hint(format!(
            "`dbguard snapshot {path}`{in_worktree} repairs the damaged chunks of {} while the live file still holds those bytes; then run `dbguard verify` again",
            ids(broken, 5)
        ));
        if let Some(latest) = restorable.last() {
            error = error.hint(format!(
                "#{} of {path} is intact: `dbguard restore {path} --from {}`{in_worktree}",
                latest.id, latest.id
            ));
        }
    }
    if report.read_only {
        error = error.hint("the store is read-only: repairs need it writable again");
    } else if report.stat_cache_cleared > 0 {
        ui.status(&format!(
            "the next snapshot of each affected database reads the file again instead of reusing a damaged image ({} cleared)",
            plural(report.stat_cache_cleared, "cache entry", "cache entries")
        ));
    }
    error
}
