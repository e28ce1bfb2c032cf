//! `dbguard show ID`: one snapshot in full: when, how, what git did, rows per table.

use crate::error::CommandError;
use crate::flow::Context;
use crate::flow::snapshot::{partial_advice, partial_message};
use crate::ui::local_time;
use crate::ui::{self, Tone, Ui, json};

#[derive(Debug, clap::Args)]
#[command(after_long_help = "Examples:
  dbguard show 14
  dbguard show '#14' --json")]
pub(crate) struct Args {
    /// Snapshot id, as `dbguard log` shows it (14 or #14).
    pub(crate) id: String,
}

pub(crate) fn run(ui: &Ui, ctx: &Context, args: &Args) -> Result<(), CommandError> {
    let Some(store) = ctx.existing_store()? else {
        return Err(
            CommandError::new("there are no snapshots in this repository yet")
                .hint("`dbguard snapshot` takes one"),
        );
    };
    let snapshot = Context::find_snapshot(&store, &args.id)?;
    let completeness = &snapshot.completeness;
    if ui.json {
        json::print(ui, &json::Snapshot::from(&snapshot));
        return Ok(());
    }
    ui.out(&ui.paint(Tone::Bold, &format!("snapshot #{}", snapshot.id)));
    let mut fields = vec![
        ("database", format!("{} ({})", snapshot.path, snapshot.kind)),
        ("worktree", snapshot.worktree.clone()),
        (
            "taken",
            format!(
                "{} ({})",
                local_time(snapshot.created_at),
                crate::ui::age(snapshot.created_at)
            ),
        ),
        match crate::compare::restored_from(&snapshot) {
            Some(_) => ("after", snapshot.operation.describe()),
            // A dbguard command that took it on its own, or the git command it was for.
            None if snapshot.operation.is_dbguard_command() => {
                ("taken by", snapshot.operation.describe())
            }
            None => ("before", snapshot.operation.describe()),
        },
        ("git state", snapshot.git_state.clone()),
        ("size", ui::bytes(snapshot.size)),
        ("consistency", snapshot.consistency.clone()),
        (
            "complete",
            match completeness.describe_missing() {
                Some(missing) if completeness.partial => format!("NO: partial, {missing}"),
                _ if completeness.partial => "NO: partial".into(),
                _ => "yes".into(),
            },
        ),
        ("image", snapshot.image_digest[..16].to_string()),
    ];
    if snapshot.reused {
        fields.push((
            "note",
            "file unchanged since the previous snapshot; same image".into(),
        ));
    }
    if let Some(message) = &snapshot.message {
        fields.push(("message", message.clone()));
    }
    // Later operations that found the database unchanged refer to this snapshot.
    const SHOWN: usize = 5;
    let hidden = snapshot.unchanged.len().saturating_sub(SHOWN);
    if hidden > 0 {
        fields.push((
            "unchanged",
            format!("before {hidden} earlier commands (`dbguard log` lists them)"),
        ));
    }
    for seen in &snapshot.unchanged[hidden..] {
        fields.push((
            "unchanged",
            format!(
                "before `{}`, {} ({})",
                seen.operation.describe(),
                local_time(seen.created_at),
                crate::ui::age(seen.created_at)
            ),
        ));
    }
    if let Some(head) = &snapshot.operation.head_before {
        fields.push(("HEAD before", head[..head.len().min(12)].to_string()));
    }
    if let Some(head) = &snapshot.operation.head_after {
        fields.push(("HEAD after", head[..head.len().min(12)].to_string()));
    }
    for (name, value) in fields {
        ui.out(&format!("  {name:<12} {value}"));
    }
    let mut rows = vec![vec!["TABLE".to_string(), "ROWS".into()]];
    for (table, count) in &snapshot.census.tables {
        rows.push(vec![table.clone(), ui::count(*count)]);
    }
    ui.out("");
    for line in ui::table(&rows) {
        ui.out(&format!("  {line}"));
    }
    if completeness.partial {
        ui.warn(&partial_message(snapshot.id, &snapshot.path, completeness));
        ui.hint(&partial_advice(
            completeness.missing.as_ref().and_then(|m| m.holder_pid),
        ));
    }
    Ok(())
}
