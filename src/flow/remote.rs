//! Pushing to a remote, in the foreground (`dbguard push`, `prune --remote`) or in the
//! background after new snapshots (`git config dbguard.remote.autopush NAME`): a detached
//! `dbguard push NAME --background`, so that no git command waits on the network. The
//! background push writes its outcome to `<store>/remote-status.json` (shown by
//! `dbguard remote list`) and its errors to `<store>/push.log`.

use std::fs::OpenOptions;
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde::{Deserialize, Serialize};

use crate::clock;
use crate::error::CommandError;
use crate::flow::Context;
use crate::remote::{Client, RemoteError, RemoteSpec, keys};
use crate::store::Store;
use crate::store::replica::{self, PushPlan, PushReport, RemoteLock, ReplicaError};
use crate::ui::{self, Ui};

/// The remote a command names, else the autopush one, else the only one.
pub(crate) fn resolve<'a>(
    ctx: &'a Context,
    name: Option<&str>,
) -> Result<&'a RemoteSpec, CommandError> {
    let remotes = &ctx.settings.remotes;
    let add_hint = "add one: `dbguard remote add backup s3://bucket/prefix` (or file:///path)";
    let wanted = match name {
        Some(name) => name.to_string(),
        None => match (&ctx.settings.autopush, remotes.as_slice()) {
            (Some(name), _) => name.clone(),
            (None, [only]) => only.name.clone(),
            (None, []) => {
                return Err(CommandError::new("no remote is configured").hint(add_hint));
            }
            (None, _) => {
                let names: Vec<&str> = remotes.iter().map(|r| r.name.as_str()).collect();
                return Err(CommandError::new(format!(
                    "{} remotes are configured ({}): which one?",
                    remotes.len(),
                    names.join(", ")
                ))
                .hint("name it: `dbguard push NAME`"));
            }
        },
    };
    remotes.iter().find(|r| r.name == wanted).ok_or_else(|| {
        CommandError::new(format!("there is no remote named `{wanted}`")).hint(
            if remotes.is_empty() {
                add_hint.to_string()
            } else {
                "`dbguard remote list` shows the remotes".to_string()
            },
        )
    })
}

/// How many snapshot records `client` holds in stores other than this one (another
/// clone's, or this clone's before it was deleted): what a fresh clone fetches rather
/// than pushes. `None` when the remote cannot be listed now.
pub(crate) fn snapshots_of_other_stores(ctx: &Context, client: &Client) -> Option<usize> {
    let plan = plan_at(&ctx.settings.store.value).ok().flatten();
    let ours = plan.as_ref().map(|p| p.store_id());
    let listing = client.list("stores").ok()?;
    let records = listing.iter().filter(|object| {
        let parts: Vec<&str> = object.name.split('/').collect();
        matches!(parts.as_slice(), ["stores", id, "snapshots", record]
            if Some(*id) != ours && record.ends_with(".json"))
    });
    Some(records.count())
}

/// A passphrase typed on the terminal, when there is one to ask on.
pub(crate) fn ask_passphrase(prompt: &str) -> Option<String> {
    use std::io::IsTerminal;
    if !(std::io::stdin().is_terminal() && std::io::stderr().is_terminal()) {
        return None;
    }
    dialoguer::Password::new()
        .with_prompt(prompt)
        .interact()
        .ok()
        .filter(|p| !p.is_empty())
}

/// A client for `remote`, its key unlocked when it is encrypted (the key file, the
/// passphrase file or command, else asked on the terminal): before anything is read
/// or written, so a missing or wrong key changes nothing.
pub(crate) fn connect(remote: &RemoteSpec, create: bool) -> Result<Client, RemoteError> {
    let mut client = Client::connect(remote, create)?;
    keys::unlock(&mut client, remote, &|| {
        ask_passphrase(&format!("Passphrase of remote {}", remote.name))
    })?;
    Ok(client)
}

/// The push plan, read under the store's lock and the lock released: `None` when there
/// is no store yet.
pub(crate) fn plan_at(store_root: &Path) -> Result<Option<PushPlan>, ReplicaError> {
    let Some(store) = Store::open_existing(store_root)? else {
        return Ok(None);
    };
    Ok(Some(store.push_plan()?))
}

/// Push with a progress bar (on a terminal).
pub(crate) fn push(
    ui: &Ui,
    client: &Client,
    plan: &PushPlan,
    lock: &RemoteLock,
) -> Result<PushReport, ReplicaError> {
    let bar = ui.progress(plan.pack_bytes(), "push: uploading packs");
    let report = replica::push(client, plan, lock, &|done| bar.set_position(done));
    bar.finish_and_clear();
    report
}

/// "pushed 3 snapshots: 5 packs, 40.1 MiB sent (2 packs were there already)".
pub(crate) fn describe(report: &PushReport, remote: &RemoteSpec) -> String {
    let mut text = format!(
        "pushed {} to {} ({}): {} sent",
        plural(report.pushed.len(), "new snapshot", "new snapshots"),
        remote.name,
        remote.url,
        if report.packs_sent == 0 {
            "nothing".to_string()
        } else {
            format!(
                "{}, {}",
                plural(report.packs_sent, "pack", "packs"),
                ui::bytes(report.bytes_sent)
            )
        },
    );
    if report.already > 0 || report.packs_already > 0 {
        text.push_str(&format!(
            " ({} and {} were there already)",
            plural(report.already, "snapshot", "snapshots"),
            plural(report.packs_already, "pack", "packs")
        ));
    }
    if report.packs_copied > 0 {
        text.push_str(&format!(
            "; {} already on the remote for another clone were copied there, not sent",
            plural(report.packs_copied, "pack", "packs")
        ));
    }
    if !report.rewritten.is_empty() {
        text.push_str(&format!(
            "; replaced {} on the remote with the command line redacted",
            plural(report.rewritten.len(), "older record", "older records")
        ));
    }
    text
}

/// What was not pushed and why, one warning each.
pub(crate) fn warnings(report: &PushReport) -> Vec<String> {
    let mut lines = Vec::new();
    if !report.left_out.is_empty() {
        lines.push(format!(
            "not pushed: {} (pruned while pushing); `dbguard push` again sends them",
            ids(&report.left_out)
        ));
    }
    if !report.damaged_packs.is_empty() {
        lines.push(format!(
            "not pushed: the snapshots in {} whose copies on the encrypted remote are damaged (a push never replaces an object); delete those objects with credentials that may, then push again",
            plural(report.damaged_packs.len(), "pack", "packs")
        ));
    }
    if !report.legacy.is_empty() {
        lines.push(format!(
            "not pushed: {} (stored in the format before packs; a new snapshot of the same database is pushed)",
            ids(&report.legacy)
        ));
    }
    lines
}

fn ids(ids: &[i64]) -> String {
    let shown: Vec<String> = ids.iter().take(10).map(|id| format!("#{id}")).collect();
    let more = ids.len().saturating_sub(10);
    if more > 0 {
        format!("{} and {more} more", shown.join(", "))
    } else {
        shown.join(", ")
    }
}

pub(crate) fn plural(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// The outcome of the last background push, for `dbguard remote list`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct PushStatus {
    pub(crate) remote: String,
    pub(crate) finished_at: String,
    pub(crate) ok: bool,
    pub(crate) message: String,
}

fn status_path(store: &Path) -> PathBuf {
    store.join("remote-status.json")
}

pub(crate) fn read_status(ctx: &Context) -> Option<PushStatus> {
    let text = std::fs::read_to_string(status_path(&ctx.settings.store.value)).ok()?;
    serde_json::from_str(&text).ok()
}

pub(crate) fn write_status(ctx: &Context, status: &PushStatus) {
    let path = status_path(&ctx.settings.store.value);
    let temp = path.with_extension("json.tmp");
    let written = std::fs::write(&temp, serde_json::to_vec_pretty(status).unwrap_or_default())
        .and_then(|()| std::fs::rename(&temp, &path));
    if written.is_err() {
        let _ = std::fs::remove_file(&temp);
    }
}

fn pending_path(store: &Path) -> PathBuf {
    store.join("push.pending")
}

/// After new snapshots: start the autopush remote's push in the background, detached
/// (its own process group, no terminal, output to `push.log`), and return at once. A
/// push already running sees the marker and pushes again when it is done.
pub(crate) fn autopush_after_snapshots(ctx: &Context) {
    let Some(name) = &ctx.settings.autopush else {
        return;
    };
    if !ctx.settings.remotes.iter().any(|r| &r.name == name) {
        return;
    }
    let store = &ctx.settings.store.value;
    let _ = std::fs::write(pending_path(store), b"");
    let Ok(exe) = std::env::current_exe() else {
        return;
    };
    let log = OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(store.join("push.log"));
    let stderr = match log {
        Ok(file) => Stdio::from(file),
        Err(_) => Stdio::null(),
    };
    let _ = Command::new(exe)
        .args(["push", name.as_str(), "--background"])
        .current_dir(&ctx.repo.worktree)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(stderr)
        .process_group(0)
        .spawn();
}

/// `dbguard push NAME --background`: push, and again while new snapshots are pending;
/// exits at once when another push holds the store's remote lock (that one sees the
/// pending marker the trigger left, after it releases the lock, and goes round again).
pub(crate) fn background_push(ui: &Ui, ctx: &Context, remote: &RemoteSpec) {
    let root = ctx.settings.store.value.clone();
    loop {
        let lock = match RemoteLock::take(&root, false) {
            Ok(lock) => lock,
            Err(_) => return,
        };
        // Taken under the lock, before the plan is read: the plan covers every snapshot
        // whose trigger left this marker.
        let _ = std::fs::remove_file(pending_path(&root));
        let outcome = (|| -> Result<Option<PushReport>, ReplicaError> {
            let Some(plan) = plan_at(&root)? else {
                return Ok(None);
            };
            let client = connect(remote, true)?;
            push(ui, &client, &plan, &lock).map(Some)
        })();
        let (ok, message) = match outcome {
            Ok(Some(report)) => (true, describe(&report, remote)),
            Ok(None) => (true, "no snapshot store yet".into()),
            Err(e) => {
                let error = CommandError::from(e);
                let mut message = error.message();
                if let Some(hint) = error.hints().first() {
                    message.push_str(&format!(" ({hint})"));
                }
                eprintln!(
                    "{} dbguard push {}: {message}",
                    clock::now().to_rfc3339(),
                    remote.name
                );
                (false, message)
            }
        };
        write_status(
            ctx,
            &PushStatus {
                remote: remote.name.clone(),
                finished_at: clock::now().to_rfc3339(),
                ok,
                message,
            },
        );
        drop(lock);
        if !ok || !pending_path(&root).exists() {
            return;
        }
    }
}
