//! `dbguard config`: the effective settings and where each one came from.

use crate::error::CommandError;
use crate::flow::Context;
use crate::ui::{Tone, Ui, json};

#[derive(Debug, clap::Args)]
#[command(
    after_long_help = "Settings come from .dbguard.toml at the top of the working tree (shared
with the repository) and git config dbguard.* (local; wins). Examples:
  dbguard config
  git config dbguard.store /mnt/backups/myrepo-dbguard
  git config dbguard.precommit warn
  git config dbguard.keepLast 20"
)]
pub(crate) struct Args {}

pub(crate) fn run(ui: &Ui, ctx: &Context, _args: &Args) -> Result<(), CommandError> {
    let s = &ctx.settings;
    let environment = crate::env::in_effect();
    if ui.json {
        let config = json::Config {
            settings: s,
            environment: environment
                .iter()
                .map(|(variable, value)| (variable.name, value.clone()))
                .collect(),
        };
        json::print(ui, &config);
        return Ok(());
    }
    let r = &s.retention.value;
    let retention: Vec<String> = [
        ("keep_last", r.keep_last),
        ("keep_hourly", r.keep_hourly),
        ("keep_daily", r.keep_daily),
        ("keep_weekly", r.keep_weekly),
        ("keep_monthly", r.keep_monthly),
    ]
    .iter()
    .filter_map(|(name, value)| value.map(|v| format!("{name}={v}")))
    .chain(r.keep_within.iter().map(|w| format!("keep_within={w}")))
    .collect();
    let rows = [
        (
            "store",
            s.store.value.display().to_string(),
            s.store.source.describe(),
        ),
        (
            "exclude",
            s.exclude.value.join(", "),
            s.exclude.source.describe(),
        ),
        (
            "retention",
            retention.join(" "),
            s.retention.source.describe(),
        ),
        (
            "pre_commit",
            format!("{:?}", s.pre_commit.value).to_lowercase(),
            s.pre_commit.source.describe(),
        ),
    ];
    for (name, value, source) in rows {
        ui.out(&format!(
            "{name:<11} {value}  {}",
            ui.paint(Tone::Dim, &format!("({source})"))
        ));
    }
    // Remotes: where they point, never their credentials (`dbguard remote list` says
    // where those come from).
    for remote in &s.remotes {
        let mut value = format!("{} {}", remote.name, remote.url);
        if let Some(endpoint) = &remote.endpoint {
            value.push_str(&format!(" at {endpoint}"));
        }
        if s.autopush.as_deref() == Some(remote.name.as_str()) {
            value.push_str(" (autopush)");
        }
        ui.out(&format!(
            "{:<11} {value}  {}",
            "remote",
            ui.paint(Tone::Dim, "(git config)")
        ));
    }
    // The variables in effect, so a surprising behaviour (no prompt, a fixed clock) has a
    // visible cause.
    for (variable, value) in environment {
        ui.out(&format!(
            "{:<11} {}={value}  {}",
            "env",
            variable.name,
            ui.paint(Tone::Dim, &format!("({})", variable.effect))
        ));
    }
    Ok(())
}
