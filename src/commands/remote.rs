//! `dbguard remote add|list|remove|key|encrypt`: where copies of the store go and the
//! keys that encrypt them. Remotes live in the repository's git config
//! (`dbguard.remote.<name>.url`, `.endpoint`, `.region`, `.profile`, `.encrypted`,
//! `.keyFile`); credentials and passphrases never do: they come from the AWS environment
//! and files, and from the terminal, a passphrase file or command, or a key file.

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::config;
use crate::error::CommandError;
use crate::flow::Context;
use crate::flow::remote::{PushStatus, ask_passphrase, connect, plural, read_status, resolve};
use crate::remote::keys::{self, Opened};
use crate::remote::{Client, RemoteSpec, RemoteUrl, credentials, secrets, valid_name};
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
They are never written to git config. The bucket must exist.

Everything pushed is encrypted unless --no-encryption: a new remote gets a random key,
wrapped by a passphrase (asked on the terminal, or the first line of the file named by
DBGUARD_PASSWORD_FILE, or printed by `git config dbguard.remote.NAME.passwordCommand`)
and/or kept in a key file (--key-file). A lost passphrase and key file means lost copies.")]
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
        /// Push in plain (readable by anyone who can read the bucket).
        #[arg(long, conflicts_with = "key_file")]
        no_encryption: bool,
        /// A key file that opens it: an existing one (another remote's key, exported),
        /// or a new one written there.
        #[arg(long, value_name = "FILE")]
        key_file: Option<PathBuf>,
    },
    /// An encrypted remote's keys: export a key file, add a passphrase, change one.
    Key {
        #[command(subcommand)]
        action: KeyAction,
    },
    /// Encrypt an unencrypted remote: copy every object encrypted; with
    /// --remove-plaintext, then delete the plain ones.
    Encrypt {
        name: String,
        /// Delete the unencrypted objects once their encrypted copies read back (needs
        /// credentials that may delete).
        #[arg(long)]
        remove_plaintext: bool,
        /// Keep the new key in this key file (new, or an existing one to reuse).
        #[arg(long, value_name = "FILE")]
        key_file: Option<PathBuf>,
    },
    /// List the remotes, where their credentials come from, and the last automatic push.
    List,
    /// Forget a remote (its objects stay where they are).
    Remove { name: String },
}

#[derive(Debug, clap::Subcommand)]
pub(crate) enum KeyAction {
    /// Write the remote's key to a new key file (keep it offline: it opens every copy).
    Export { name: String, file: PathBuf },
    /// Add a passphrase (DBGUARD_NEW_PASSWORD_FILE, else asked) or, with --key-file, a
    /// new key file for the same key.
    Add {
        name: String,
        #[arg(long, value_name = "FILE")]
        key_file: Option<PathBuf>,
    },
    /// Change the passphrase that opens it: a new one is added, then the old one removed.
    Passwd { name: String },
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
/// After `remote add`: warn when no credentials are found, and say what comes next:
/// `fetch` when the remote holds snapshots made elsewhere (a fresh clone), else `push`.
/// An encrypted remote is listed through its opened key (`opened`: `None` when the key
/// was just made, so nothing on the remote can be read with it yet).
fn after_add(ui: &Ui, ctx: &Context, spec: &RemoteSpec, opened: Option<&Client>) {
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
    let plain = if spec.encrypted {
        None
    } else {
        Client::connect(spec, false).ok()
    };
    let elsewhere = opened
        .or(plain.as_ref())
        .and_then(|client| crate::flow::remote::snapshots_of_other_stores(ctx, client));
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
            no_encryption,
            key_file,
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
            let key_file = key_file.as_deref().map(absolute).transpose()?;
            let spec = RemoteSpec {
                name: name.clone(),
                url,
                endpoint: endpoint.clone(),
                region: region.clone(),
                profile: profile.clone(),
                encrypted: !no_encryption,
                key_file: key_file.clone(),
                password_command: ctx
                    .settings
                    .remotes
                    .iter()
                    .find(|r| &r.name == name)
                    .and_then(|r| r.password_command.clone()),
            };
            let encryption = if spec.encrypted {
                Some(set_up_key(&spec)?)
            } else {
                None
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
            if let Some(encryption) = &encryption {
                ui.status(&encryption.0);
            }
            after_add(
                ui,
                ctx,
                &spec,
                encryption.as_ref().and_then(|(_, opened)| opened.as_ref()),
            );
            if *autopush && !secrets::opens_unattended(&spec) {
                // Not silently: every background push would fail into push.log.
                ui.warn(&format!(
                    "remote {name} opens only with a typed passphrase, and autopush runs in git hooks where nobody can type it: the background pushes will fail (`dbguard remote list` shows it)"
                ));
                ui.hint(&format!(
                    "give it a key file: dbguard remote key export {name} FILE && git config dbguard.remote.{name}.keyFile FILE (or a password command: git config dbguard.remote.{name}.passwordCommand '…')"
                ));
            }
            Ok(())
        }
        Action::Key { action } => run_key(ui, ctx, action),
        Action::Encrypt {
            name,
            remove_plaintext,
            key_file,
        } => encrypt(ui, ctx, name, *remove_plaintext, key_file.as_deref()),
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
                if spec.encrypted {
                    line.push_str(" (encrypted)");
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

fn absolute(path: &Path) -> Result<PathBuf, CommandError> {
    std::path::absolute(path)
        .map_err(|e| CommandError::new(format!("cannot use the key file {}: {e}", path.display())))
}

/// A new passphrase: the first line of DBGUARD_NEW_PASSWORD_FILE (or, for a new remote,
/// of DBGUARD_PASSWORD_FILE or the password command), else typed twice on a terminal.
fn new_passphrase(spec: &RemoteSpec, for_new_remote: bool) -> Result<Option<String>, CommandError> {
    let from_env = if for_new_remote {
        secrets::passphrase(spec)
    } else {
        secrets::passphrase_from_file(secrets::NEW_PASSWORD_FILE_VAR)
    };
    if let Some(passphrase) = from_env.map_err(CommandError::new)? {
        return Ok(Some(passphrase));
    }
    use std::io::IsTerminal;
    if !(std::io::stdin().is_terminal() && std::io::stderr().is_terminal()) {
        return Ok(None);
    }
    let typed = dialoguer::Password::new()
        .with_prompt(format!("New passphrase of remote {}", spec.name))
        .with_confirmation("Again", "the two passphrases differ")
        .interact()
        .map_err(|e| CommandError::new(format!("cannot read the passphrase: {e}")))?;
    Ok(Some(typed).filter(|p| !p.is_empty()))
}

/// `remote add` of an encrypted remote: open its key when it has one (the passphrase or
/// key file must work), else make one. Returns the line that says which, and the client
/// opened with an existing key (`None` for a new key).
fn set_up_key(spec: &RemoteSpec) -> Result<(String, Option<Client>), CommandError> {
    let mut client = Client::connect(spec, true)?;
    if keys::has_keys(&client)? {
        let opened = keys::unlock(&mut client, spec, &|| {
            ask_passphrase(&format!("Passphrase of remote {}", spec.name))
        })?;
        let said = format!(
            "encrypted: opened the remote's existing key with {}",
            describe_opened(&opened)
        );
        return Ok((said, Some(client)));
    }
    if keys::holds_plain_copies(&client)? {
        return Err(crate::remote::RemoteError::HoldsPlaintext {
            url: spec.url.to_string(),
        }
        .into());
    }
    let passphrase = new_passphrase(spec, true)?;
    if passphrase.is_none() && spec.key_file.is_none() {
        return Err(CommandError::new(format!(
            "remote {}: an encrypted remote needs a passphrase or a key file, and none was given",
            spec.name
        ))
        .hint(format!(
            "type one on a terminal, name a file holding it in {}, give --key-file FILE, or add the remote with --no-encryption",
            secrets::PASSWORD_FILE_VAR
        )));
    }
    keys::set_up(&mut client, passphrase.as_deref(), spec.key_file.as_deref())?;
    let by = match (&passphrase, &spec.key_file) {
        (Some(_), Some(file)) => format!("the passphrase and the key file {}", file.display()),
        (None, Some(file)) => format!("the key file {}", file.display()),
        _ => "the passphrase".to_string(),
    };
    let said = format!(
        "encrypted with a new key, opened by {by}: without it the remote's copies cannot be read (`dbguard remote key export {} FILE` saves a key file)",
        spec.name
    );
    Ok((said, None))
}

fn describe_opened(opened: &Opened) -> String {
    match opened {
        Opened::Plain => "nothing (not encrypted)".into(),
        Opened::KeyFile(path) => format!("the key file {path}"),
        Opened::Passphrase(_) => "the passphrase".into(),
    }
}

fn run_key(ui: &Ui, ctx: &Context, action: &KeyAction) -> Result<(), CommandError> {
    let name = match action {
        KeyAction::Export { name, .. }
        | KeyAction::Add { name, .. }
        | KeyAction::Passwd { name } => name,
    };
    let spec = resolve(ctx, Some(name))?;
    let url = spec.url.to_string();
    let mut client = Client::connect(spec, false)?;
    let opened = keys::unlock(&mut client, spec, &|| {
        ask_passphrase(&format!("Passphrase of remote {name}"))
    })?;
    if opened == Opened::Plain {
        return Err(CommandError::new(format!("remote {name} is not encrypted"))
            .hint(format!("`dbguard remote encrypt {name}` encrypts it")));
    }
    match action {
        KeyAction::Export { file, .. } => {
            keys::export_key_file(&client, &url, file)?;
            ui.status(&format!(
                "wrote the key of remote {name} to {}: it opens every copy there, keep it secret and safe",
                file.display()
            ));
        }
        KeyAction::Add {
            key_file: Some(file),
            ..
        } => {
            keys::export_key_file(&client, &url, file)?;
            ui.status(&format!(
                "remote {name} now also opens with the key file {}",
                file.display()
            ));
        }
        KeyAction::Add { key_file: None, .. } => {
            let passphrase = new_passphrase(spec, false)?.ok_or_else(no_new_passphrase)?;
            keys::add_passphrase(&client, &url, &passphrase)?;
            ui.status(&format!(
                "remote {name} now also opens with the new passphrase"
            ));
        }
        KeyAction::Passwd { .. } => {
            let Opened::Passphrase(old) = &opened else {
                return Err(CommandError::new(format!(
                    "remote {name} was opened by {}, not by a passphrase",
                    describe_opened(&opened)
                ))
                .hint(format!(
                    "unset {} (and the remote's keyFile) to change a passphrase",
                    secrets::KEY_FILE_VAR
                )));
            };
            let passphrase = new_passphrase(spec, false)?.ok_or_else(no_new_passphrase)?;
            keys::add_passphrase(&client, &url, &passphrase)?;
            match keys::remove_record(&client, old) {
                Ok(()) => ui.status(&format!(
                    "changed the passphrase of remote {name}: the old one no longer opens it"
                )),
                Err(e) => ui.warn(&format!(
                    "added the new passphrase of remote {name}, but the old one still opens it: {e}"
                )),
            }
        }
    }
    Ok(())
}

fn no_new_passphrase() -> CommandError {
    CommandError::new("no new passphrase was given").hint(format!(
        "type it on a terminal, or name a file holding it in {}",
        secrets::NEW_PASSWORD_FILE_VAR
    ))
}

/// `remote encrypt NAME`: set up a key when the remote has none, copy every plain object
/// encrypted, then (asked for) delete the plain ones; from then on pushes are encrypted.
fn encrypt(
    ui: &Ui,
    ctx: &Context,
    name: &str,
    remove_plaintext: bool,
    key_file: Option<&Path>,
) -> Result<(), CommandError> {
    let configured = resolve(ctx, Some(name))?;
    let mut spec = configured.clone();
    spec.encrypted = true;
    if let Some(file) = key_file {
        spec.key_file = Some(absolute(file)?);
    }
    let url = spec.url.to_string();
    let client = if keys::has_keys(&Client::connect(&spec, false)?)? {
        connect(&spec, false)?
    } else {
        let mut client = Client::connect(&spec, false)?;
        let passphrase = new_passphrase(&spec, true)?;
        if passphrase.is_none() && spec.key_file.is_none() {
            return Err(no_new_passphrase());
        }
        keys::set_up(&mut client, passphrase.as_deref(), spec.key_file.as_deref())?;
        client
    };
    // From here every push is encrypted, even if the copying below stops half-way.
    config::save_remote(&ctx.repo, &spec)?;
    let converted = keys::convert(&client, &url, remove_plaintext)?;
    ui.status(&format!(
        "remote {name} is encrypted: copied {} ({}){}{}",
        plural(converted.copied, "object", "objects"),
        crate::ui::bytes(converted.bytes),
        if converted.already > 0 {
            format!("; {} were copied before", converted.already)
        } else {
            String::new()
        },
        if remove_plaintext {
            format!(
                "; removed {} in plain",
                plural(converted.removed, "object", "objects")
            )
        } else {
            String::new()
        }
    ));
    if !remove_plaintext && converted.copied + converted.already > 0 {
        ui.hint(&format!(
            "the unencrypted objects are still there: `dbguard remote encrypt {name} --remove-plaintext` deletes them"
        ));
    }
    Ok(())
}
