//! `dbguard fetch [NAME]`: bring the remote's snapshots into this store (a fresh clone,
//! a new machine, a lost store), checked block by block; then `dbguard log` lists them
//! and `dbguard restore` puts them back.

use crate::error::CommandError;
use crate::flow::Context;
use crate::flow::remote::{connect, plural, resolve};
use crate::store::replica::FetchPlan;
use crate::ui::{self, Ui, json};

#[derive(Debug, clap::Args)]
#[command(after_long_help = "Examples:
  dbguard fetch backup && dbguard log
  dbguard restore 14

Fetches every snapshot on the remote that this store lacks, from every store that
pushed there (other clones and machines too), and files them under this working tree.")]
pub(crate) struct Args {
    /// The remote (`dbguard remote list`).
    pub(crate) name: Option<String>,
}

pub(crate) fn run(ui: &Ui, ctx: &Context, args: &Args) -> Result<(), CommandError> {
    let remote = resolve(ctx, args.name.as_deref())?;
    let client = connect(remote, false)?;
    let mut plan = FetchPlan::prepare(&ctx.settings.store.value, &client)?;
    let bar = ui.progress(plan.download_bytes(), "fetch: downloading packs");
    let downloaded = plan.download(&client, &|done| bar.set_position(done));
    bar.finish_and_clear();
    downloaded?;
    let report = plan.import(&ctx.worktree_key())?;
    if ui.json {
        json::print(ui, &json::Fetch::new(remote, &report));
    } else {
        for fetched in &report.imported {
            ui.out(&format!(
                "#{}\t{}\t{}\t(from {})",
                fetched.id, fetched.path, fetched.created_at, fetched.origin
            ));
        }
        ui.status(&format!(
            "fetched {} from {} ({} downloaded){}",
            plural(report.imported.len(), "snapshot", "snapshots"),
            remote.name,
            ui::bytes(report.bytes_fetched),
            if report.already > 0 {
                format!("; {} here already", plural(report.already, "was", "were"))
            } else {
                String::new()
            }
        ));
    }
    for (origin, why) in &report.incomplete {
        ui.warn(&format!("cannot fetch snapshot {origin}: {why}"));
    }
    if !report.imported.is_empty() && !ui.json {
        ui.hint("`dbguard log` lists them; `dbguard restore ID` puts one back");
    }
    if !report.incomplete.is_empty() && report.imported.is_empty() {
        return Err(CommandError::new(format!(
            "no snapshot could be fetched whole from {}",
            remote.name
        ))
        .hint(format!(
            "`dbguard verify --remote {}` checks the whole remote",
            remote.name
        )));
    }
    Ok(())
}
