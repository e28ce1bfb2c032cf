//! `dbguard remote add|list|remove`: where copies of the store go. Remotes live in the
//! repository's git config (`dbguard.remote.<name>.url`, `.endpoint`, `.region`,
//! `.profile`); credentials never do: they come from the AWS environment and files.

use serde::Serialize;

use crate::config;
use crate::error::CommandError;
use crate::flow::Context;
use crate::flow::remote::{PushStatus, read_status};
use crate::remote::{Client, RemoteSpec, RemoteUrl, credentials, valid_name};
use crate::ui::{Ui, json};

#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    #[command(subcommand)]
    pub(crate) action: Action,
}

#[derive(Debug, clap::Subcommand)]
pub(crate) enum Action {
    /// Add (or change) a remote: s3://bucket/prefix or file:///path.
    #[command(after_long_help = "Examples:
  dbguard remote add backup s3://lab-backups/dbguard/crawler
  dbguard remote add lab s3://dbguard/crawler --endpoint http://10.0.0.5:8333 --autopush
  dbguard remote add nas file:///mnt/nas/dbguard

Credentials come from AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY (and AWS_SESSION_TOKEN),
else ~/.aws/credentials and ~/.aws/config for AWS_PROFILE or --profile (else `default`).
They are never written to git config. The bucket must exist.")]
    Add {
        name: String,
        url: String,
        /// An S3-compatible server's address, e.g. http://127.0.0.1:8333 (AWS when unset).
        #[arg(long, value_name = "URL")]
        endpoint: Option<String>,
        /// The bucket's region, e.g. eu-central-1 (else AWS_REGION, AWS_DEFAULT_REGION or
        /// the profile's; S3-compatible servers mostly ignore it).
        #[arg(long, value_name = "REGION")]
        region: Option<String>,
        /// The AWS profile whose credentials to use (AWS_PROFILE overrides it).
        #[arg(long)]
        profile: Option<String>,
        /// Push every new snapshot to it in the background (dbguard.remote.autopush).
        #[arg(long)]
        autopush: bool,
    },
    /// List the remotes, where their credentials come from, and the last automatic push.
    List,
    /// Forget a remote (its objects stay where they are).
    Remove { name: String },
}

#[derive(Serialize)]
struct Listed<'a> {
    #[serde(flatten)]
    spec: &'a RemoteSpec,
    autopush: bool,
    credentials: Option<String>,
}

#[derive(Serialize)]
struct Listing<'a> {
    remotes: Vec<Listed<'a>>,
    last_autopush: Option<PushStatus>,
}

/// What to do next with a remote just added: fetch when it already holds snapshots made
/// elsewhere (a fresh clone), else push; and a warning when an S3 remote has no
/// credentials to use.
fn after_add(ui: &Ui, ctx: &Context, spec: &RemoteSpec) {
    let name = &spec.name;
    if matches!(spec.url, RemoteUrl::S3 { .. })
        && credentials::resolve(spec.profile.as_deref())
            .credentials
            .is_none()
    {
        ui.warn(&format!(
            "no AWS credentials found for remote {name}: push and fetch are refused until there are"
        ));
        ui.hint("set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or add them to ~/.aws/credentials (or name a profile with --profile)");
        return;
    }
    let elsewhere = Client::connect(spec, false)
        .ok()
        .and_then(|client| crate::flow::remote::snapshots_of_other_stores(ctx, &client));
    match elsewhere {
        Some(n) if n > 0 => ui.hint(&format!(
            "{name} holds {n} snapshot{} made elsewhere (another clone, or this one before it was deleted): `dbguard fetch {name}` brings them here",
            if n == 1 { "" } else { "s" }
        )),
        _ => ui.hint(&format!("`dbguard push {name}` uploads the snapshots")),
    }
}

pub(crate) fn run(ui: &Ui, ctx: &Context, args: &Args) -> Result<(), CommandError> {
    match &args.action {
        Action::Add {
            name,
            url,
            endpoint,
            region,
            profile,
            autopush,
        } => {
            if !valid_name(name) {
                return Err(CommandError::new(format!("`{name}` cannot name a remote"))
                    .hint("use letters, digits, `-` and `_`, e.g. backup"));
            }
            let url = RemoteUrl::parse(url).map_err(|why| {
                CommandError::new(format!("cannot add remote {name}: {why}"))
                    .hint("e.g. s3://my-bucket/dbguard/this-repo or file:///mnt/backup/dbguard")
            })?;
            if let Some(endpoint) = endpoint
                && !(endpoint.starts_with("http://") || endpoint.starts_with("https://"))
            {
                return Err(CommandError::new(format!(
                    "--endpoint {endpoint} is not an http:// or https:// address"
                ))
                .hint("e.g. --endpoint http://127.0.0.1:8333"));
            }
            if let Some(endpoint) = endpoint
                && endpoint.contains('@')
            {
                return Err(CommandError::new(
                    "credentials do not belong in the endpoint (they would be stored in git config)",
                )
                .hint("set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or use ~/.aws/credentials"));
            }
            let spec = RemoteSpec {
                name: name.clone(),
                url,
                endpoint: endpoint.clone(),
                region: region.clone(),
                profile: profile.clone(),
            };
            config::save_remote(&ctx.repo, &spec)?;
            if *autopush {
                config::set_autopush(&ctx.repo, Some(name))?;
            }
            ui.status(&format!(
                "remote {name}: {}{}{}",
                spec.url,
                spec.endpoint
                    .as_ref()
                    .map_or(String::new(), |e| format!(" at {e}")),
                if *autopush {
                    "; every new snapshot is pushed to it in the background"
                } else {
                    ""
                }
            ));
            after_add(ui, ctx, &spec);
            Ok(())
        }
        Action::List => {
            let remotes: Vec<Listed<'_>> = ctx
                .settings
                .remotes
                .iter()
                .map(|spec| Listed {
                    spec,
                    autopush: ctx.settings.autopush.as_deref() == Some(spec.name.as_str()),
                    credentials: match spec.url {
                        RemoteUrl::S3 { .. } => Some(
                            credentials::resolve(spec.profile.as_deref())
                                .credentials
                                .map_or("none found".to_string(), |c| c.describe().to_string()),
                        ),
                        RemoteUrl::File { .. } => None,
                    },
                })
                .collect();
            let last = read_status(ctx);
            if ui.json {
                json::print(
                    ui,
                    &Listing {
                        remotes,
                        last_autopush: last,
                    },
                );
                return Ok(());
            }
            if remotes.is_empty() {
                ui.status("no remotes");
                ui.hint("`dbguard remote add backup s3://bucket/prefix` adds one");
                return Ok(());
            }
            for listed in &remotes {
                let spec = listed.spec;
                let mut line = format!("{}\t{}", spec.name, spec.url);
                if let Some(endpoint) = &spec.endpoint {
                    line.push_str(&format!(" at {endpoint}"));
                }
                if listed.autopush {
                    line.push_str(" (autopush)");
                }
                if let Some(credentials) = &listed.credentials {
                    line.push_str(&format!("; credentials: {credentials}"));
                }
                ui.out(&line);
            }
            if let Some(status) = last {
                let line = format!(
                    "last automatic push to {} at {}: {}",
                    status.remote, status.finished_at, status.message
                );
                if status.ok {
                    ui.status(&line);
                } else {
                    ui.warn(&line);
                }
            }
            Ok(())
        }
        Action::Remove { name } => {
            if !config::remove_remote(&ctx.repo, name)? {
                return Err(
                    CommandError::new(format!("there is no remote named `{name}`"))
                        .hint("`dbguard remote list` shows the remotes"),
                );
            }
            ui.status(&format!(
                "removed remote {name} (what was pushed to it stays there)"
            ));
            Ok(())
        }
    }
}
