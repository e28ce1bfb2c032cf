//! `dbguard push [NAME]`: upload what the remote lacks of this store (packs, their
//! indexes, snapshot records). Safe to run again at any time: it sends only what is
//! missing, and a push that was cut short completes.

use crate::error::CommandError;
use crate::flow::Context;
use crate::flow::remote::{self as remote_flow, describe, warnings};
use crate::store::replica::RemoteLock;
use crate::ui::{Ui, json};

#[derive(Debug, clap::Args)]
#[command(after_long_help = "Examples:
  dbguard push                 the only remote, or the autopush one
  dbguard push backup
  dbguard push --new-identity  this store is a copy of another that pushes to the same remote

Each store writes only under its own id on the remote (stores/<id>/), so clones and
machines sharing a bucket never overwrite each other's objects.")]
pub(crate) struct Args {
    /// The remote (`dbguard remote list`).
    pub(crate) name: Option<String>,
    /// Give this store a new id first: for a copy of a store (cp of the clone) whose
    /// original pushes to the same remote.
    #[arg(long)]
    pub(crate) new_identity: bool,
    /// Run as the automatic push after a snapshot does (no output; the outcome goes to
    /// `dbguard remote list`).
    #[arg(long, hide = true)]
    pub(crate) background: bool,
}

pub(crate) fn run(ui: &Ui, ctx: &Context, args: &Args) -> Result<(), CommandError> {
    let remote = remote_flow::resolve(ctx, args.name.as_deref())?;
    if args.background {
        remote_flow::background_push(ui, ctx, remote);
        return Ok(());
    }
    let root = &ctx.settings.store.value;
    if args.new_identity {
        let Some(store) = ctx.existing_store_for_writing()? else {
            return Err(CommandError::new("there are no snapshots to push yet")
                .hint("`dbguard snapshot` takes one"));
        };
        let id = store.new_identity()?;
        ui.status(&format!("this store's id is now {id}"));
    }
    let lock = RemoteLock::take(root, true)?;
    let Some(plan) = remote_flow::plan_at(root)? else {
        return Err(CommandError::new("there are no snapshots to push yet")
            .hint("`dbguard snapshot` takes one"));
    };
    let client = remote_flow::connect(remote, true)?;
    let report = remote_flow::push(ui, &client, &plan, &lock)?;
    drop(lock);
    if ui.json {
        json::print(ui, &json::Push::new(remote, &report));
    } else {
        ui.status(&describe(&report, remote));
    }
    for warning in warnings(&report) {
        ui.warn(&warning);
    }
    Ok(())
}
