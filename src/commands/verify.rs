//! `dbguard verify`: re-read every chunk, check every image against its digest, and
//! check the catalog itself.

use super::Context;
use crate::error::CommandError;
use crate::ui::{self, Ui};

#[derive(Debug, clap::Args)]
#[command(after_long_help = "Examples:
  dbguard verify
  dbguard verify --json")]
pub struct Args {}

pub fn run(ui: &Ui, ctx: &Context, _args: &Args) -> Result<(), CommandError> {
    let Some(store) = ctx.existing_store()? else {
        ui.status("no snapshot store yet: nothing to verify");
        return Ok(());
    };
    let bar = ui.spinner("verify: re-reading every chunk");
    let report =
        store.verify(&|done| bar.set_message(format!("verify: {} read", ui::bytes(done))))?;
    bar.finish_and_clear();
    if ui.json {
        ui.out(&serde_json::to_string_pretty(&report).unwrap_or_default());
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
    let mut error = CommandError::new(format!("the store has {} problems", report.problems.len()))
        .hint("snapshots that use a damaged chunk cannot be restored; take a fresh `dbguard snapshot` now");
    for problem in report.problems.iter().take(20) {
        error = error.cause(problem.clone());
    }
    Err(error)
}
