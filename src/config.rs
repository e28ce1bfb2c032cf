//! Settings, data only: the repo-shared `.dbguard.toml` and git config `dbguard.*`
//! (git config wins). Nothing read here is ever executed.
//!
//! The store location can only come from git config: a `.dbguard.toml` arrives with
//! other people's commits and must not be able to send snapshots elsewhere.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::git::Repo;
use crate::remote::{RemoteSpec, RemoteUrl};

pub(crate) const FILE_NAME: &str = ".dbguard.toml";

/// Where a setting's value came from, shown by `dbguard config`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum Source {
    Default,
    File,
    GitConfig,
    /// `--store`, outside git.
    CommandLine,
    /// `DBGUARD_STORE`, outside git.
    Environment,
}

impl Source {
    pub(crate) fn describe(&self) -> &'static str {
        match self {
            Source::Default => "default",
            Source::File => FILE_NAME,
            Source::GitConfig => "git config",
            Source::CommandLine => "--store",
            Source::Environment => "DBGUARD_STORE",
        }
    }
}

#[derive(Clone, Debug, Serialize)]
pub(crate) struct Setting<T> {
    pub(crate) value: T,
    pub(crate) source: Source,
}

impl<T> Setting<T> {
    fn default(value: T) -> Setting<T> {
        Setting {
            value,
            source: Source::Default,
        }
    }
}

/// What pre-commit does with a commit that adds or changes a database file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum PreCommitPolicy {
    Refuse,
    Warn,
    Allow,
}

impl PreCommitPolicy {
    fn parse(text: &str) -> Option<PreCommitPolicy> {
        match text.trim().to_ascii_lowercase().as_str() {
            "refuse" => Some(PreCommitPolicy::Refuse),
            "warn" => Some(PreCommitPolicy::Warn),
            "allow" => Some(PreCommitPolicy::Allow),
            _ => None,
        }
    }
}

/// Retention numbers as configured (see `retention.rs` for their meaning).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RetentionConfig {
    pub(crate) keep_last: Option<u32>,
    pub(crate) keep_hourly: Option<u32>,
    pub(crate) keep_daily: Option<u32>,
    pub(crate) keep_weekly: Option<u32>,
    pub(crate) keep_monthly: Option<u32>,
    pub(crate) keep_within: Option<String>,
}

/// `.dbguard.toml`. Unknown top-level keys (a typo, or a key from a newer dbguard) are
/// reported and ignored: every known setting keeps protecting. Unknown keys inside
/// `[retention]` are errors, because retention decides what `prune` deletes.
#[derive(Debug, Default, Deserialize)]
struct FileConfig {
    exclude: Option<Vec<String>>,
    retention: Option<RetentionConfig>,
    pre_commit: Option<PreCommitPolicy>,
    #[serde(flatten)]
    unknown: std::collections::BTreeMap<String, toml::Value>,
}

#[derive(Clone, Debug, Serialize)]
pub(crate) struct Settings {
    pub(crate) store: Setting<PathBuf>,
    pub(crate) exclude: Setting<Vec<String>>,
    pub(crate) retention: Setting<RetentionConfig>,
    pub(crate) pre_commit: Setting<PreCommitPolicy>,
    /// Remotes for copies of the store (`dbguard.remote.<name>.url` …): git config only,
    /// like the store, so that no commit can send snapshots elsewhere.
    pub(crate) remotes: Vec<RemoteSpec>,
    /// `dbguard.remote.autopush`: the remote every new snapshot is pushed to.
    pub(crate) autopush: Option<String>,
    /// Problems that did not stop loading (unknown keys), for commands to show.
    #[serde(skip)]
    pub(crate) warnings: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum ConfigError {
    #[error("{path} is not valid: {message}")]
    File { path: PathBuf, message: String },
    #[error("git config {key} = {value:?} is not valid: {message}")]
    Git {
        key: String,
        value: String,
        message: String,
    },
}

pub(crate) fn default_excludes() -> Vec<String> {
    ["node_modules", ".venv", "venv", "__pycache__", ".tox"]
        .map(String::from)
        .to_vec()
}

impl Settings {
    pub(crate) fn load(repo: &Repo) -> Result<Settings, ConfigError> {
        let (settings, mut errors) = Settings::load_all(repo);
        match errors.is_empty() {
            true => Ok(settings),
            false => Err(errors.remove(0)),
        }
    }

    /// The settings for a hook, which cannot stop git: a setting that is not valid is
    /// left at its default (a broken `.dbguard.toml` counts as absent, whatever else it
    /// says), and returned, for the hook to say what is wrong. The defaults snapshot
    /// more, never less: nothing is excluded beyond the usual directories.
    pub(crate) fn load_with_defaults_for_invalid(repo: &Repo) -> (Settings, Vec<ConfigError>) {
        Settings::load_all(repo)
    }

    /// Every setting that is valid, and every error met on the way.
    fn load_all(repo: &Repo) -> (Settings, Vec<ConfigError>) {
        let mut errors = Vec::new();
        let mut settings = Settings {
            store: Setting::default(repo.default_store_dir()),
            exclude: Setting::default(default_excludes()),
            retention: Setting::default(RetentionConfig {
                keep_last: Some(10),
                ..RetentionConfig::default()
            }),
            pre_commit: Setting::default(PreCommitPolicy::Refuse),
            remotes: Vec::new(),
            autopush: None,
            warnings: Vec::new(),
        };
        let file = repo.worktree.join(FILE_NAME);
        let parsed = std::fs::read_to_string(&file).ok().and_then(|text| {
            toml::from_str::<FileConfig>(&text)
                .map_err(|e| {
                    errors.push(ConfigError::File {
                        path: file.clone(),
                        message: e.message().to_string(),
                    })
                })
                .ok()
        });
        if let Some(parsed) = parsed {
            if let Some(exclude) = parsed.exclude {
                settings.exclude = Setting {
                    value: exclude,
                    source: Source::File,
                };
            }
            if let Some(retention) = parsed.retention {
                settings.retention = Setting {
                    value: retention,
                    source: Source::File,
                };
            }
            for key in parsed.unknown.keys() {
                let known_in_retention = matches!(
                    key.as_str(),
                    "keep_last"
                        | "keep_hourly"
                        | "keep_daily"
                        | "keep_weekly"
                        | "keep_monthly"
                        | "keep_within"
                );
                settings.warnings.push(format!(
                    "{}: unknown setting `{key}` ignored{}",
                    file.display(),
                    if known_in_retention {
                        format!(" (did you mean `{key}` under [retention]?)")
                    } else {
                        " (known: exclude, pre_commit, [retention])".to_string()
                    }
                ));
            }
            if let Some(policy) = parsed.pre_commit {
                settings.pre_commit = Setting {
                    value: policy,
                    source: Source::File,
                };
            }
        }
        settings.apply_git_config(repo, &mut errors);
        (settings, errors)
    }

    /// Apply dbguard's git config keys; a key that is not valid keeps its default and
    /// its error goes to `errors`.
    fn apply_git_config(&mut self, repo: &Repo, errors: &mut Vec<ConfigError>) {
        let config = GitConfig::new(repo);
        if let Some(store) = config.path("dbguard.store") {
            let store = if store.is_absolute() {
                store
            } else {
                repo.worktree.join(store)
            };
            self.store = Setting {
                value: store,
                source: Source::GitConfig,
            };
        }
        if let Some(text) = config.string("dbguard.precommit") {
            match PreCommitPolicy::parse(&text) {
                Some(policy) => {
                    self.pre_commit = Setting {
                        value: policy,
                        source: Source::GitConfig,
                    }
                }
                None => errors.push(ConfigError::Git {
                    key: "dbguard.precommit".into(),
                    value: text.clone(),
                    message: "expected refuse, warn or allow".into(),
                }),
            }
        }
        if let Some(text) = config.string("dbguard.exclude") {
            self.exclude = Setting {
                value: text
                    .split(',')
                    .map(|s| s.trim().to_string())
                    .filter(|s| !s.is_empty())
                    .collect(),
                source: Source::GitConfig,
            };
        }
        let mut retention = self.retention.value.clone();
        let mut retention_from_git = false;
        for (key, slot) in [
            ("dbguard.keepLast", &mut retention.keep_last),
            ("dbguard.keepHourly", &mut retention.keep_hourly),
            ("dbguard.keepDaily", &mut retention.keep_daily),
            ("dbguard.keepWeekly", &mut retention.keep_weekly),
            ("dbguard.keepMonthly", &mut retention.keep_monthly),
        ] {
            if let Some(text) = config.string(key) {
                match text.trim().parse::<u32>() {
                    Ok(number) => {
                        *slot = Some(number);
                        retention_from_git = true;
                    }
                    Err(_) => errors.push(ConfigError::Git {
                        key: key.into(),
                        value: text.clone(),
                        message: "expected a non-negative number".into(),
                    }),
                }
            }
        }
        for name in config.subsections("dbguard.remote.", ".url") {
            let key = |field: &str| format!("dbguard.remote.{name}.{field}");
            let Some(text) = config.string(&key("url")) else {
                continue;
            };
            // A bad remote is left out with a warning, not an error: it only concerns the
            // copies off this machine, and refusing would stop local snapshots and guarded
            // git along with it.
            let url = match RemoteUrl::parse(&text) {
                Ok(url) => url,
                Err(why) => {
                    self.warnings.push(format!(
                        "git config {} = {text} is left out: {why} (fix it with `dbguard remote add {name} URL`)",
                        key("url")
                    ));
                    continue;
                }
            };
            self.remotes.push(RemoteSpec {
                name: name.clone(),
                url,
                endpoint: config.string(&key("endpoint")),
                region: config.string(&key("region")),
                profile: config.string(&key("profile")),
                encrypted: config
                    .string(&key("encrypted"))
                    .is_some_and(|v| v.trim() == "true"),
                key_file: config.string(&key("keyFile")).map(PathBuf::from),
                password_command: config.string(&key("passwordCommand")),
            });
        }
        self.remotes.sort_by(|a, b| a.name.cmp(&b.name));
        if let Some(name) = config.string("dbguard.remote.autopush") {
            let name = name.trim().to_string();
            if !name.is_empty() {
                if !self.remotes.iter().any(|r| r.name == name) {
                    self.warnings.push(format!(
                        "git config dbguard.remote.autopush names `{name}`, which is no remote \
                         (`dbguard remote list`): nothing is pushed automatically"
                    ));
                }
                self.autopush = Some(name);
            }
        }
        if let Some(within) = config.string("dbguard.keepWithin") {
            retention.keep_within = Some(within);
            retention_from_git = true;
        }
        if retention_from_git {
            self.retention = Setting {
                value: retention,
                source: Source::GitConfig,
            };
        }
    }
}

/// Record a remote in the repository's own git config (`.git/config`), replacing one of
/// the same name. Only addresses and names: never a credential.
pub(crate) fn save_remote(repo: &Repo, spec: &RemoteSpec) -> Result<(), ConfigError> {
    let mut config = local_config(repo)?;
    let key = |field: &str| format!("dbguard.remote.{}.{field}", spec.name);
    let fail = |key: String, value: &str| {
        let value = value.to_string();
        move |e: git2::Error| ConfigError::Git {
            key,
            value,
            message: e.message().to_string(),
        }
    };
    let url = spec.url.to_string();
    config
        .set_str(&key("url"), &url)
        .map_err(fail(key("url"), &url))?;
    let encrypted = spec.encrypted.then(|| "true".to_string());
    let key_file = spec.key_file.as_ref().map(|p| p.display().to_string());
    for (field, value) in [
        ("endpoint", &spec.endpoint),
        ("region", &spec.region),
        ("profile", &spec.profile),
        ("encrypted", &encrypted),
        ("keyFile", &key_file),
    ] {
        match value {
            Some(value) => config
                .set_str(&key(field), value)
                .map_err(fail(key(field), value))?,
            None => {
                let _ = config.remove(&key(field));
            }
        }
    }
    Ok(())
}

/// Forget a remote (and autopush to it); `false` when there was none of that name.
pub(crate) fn remove_remote(repo: &Repo, name: &str) -> Result<bool, ConfigError> {
    let mut config = local_config(repo)?;
    let mut removed = false;
    for field in [
        "url",
        "endpoint",
        "region",
        "profile",
        "encrypted",
        "keyFile",
        "passwordCommand",
    ] {
        removed |= config
            .remove(&format!("dbguard.remote.{name}.{field}"))
            .is_ok();
    }
    if config
        .get_string("dbguard.remote.autopush")
        .is_ok_and(|v| v.trim() == name)
    {
        let _ = config.remove("dbguard.remote.autopush");
    }
    Ok(removed)
}

/// Turn automatic pushes to `name` on (`Some`) or off.
pub(crate) fn set_autopush(repo: &Repo, name: Option<&str>) -> Result<(), ConfigError> {
    let mut config = local_config(repo)?;
    match name {
        Some(name) => config
            .set_str("dbguard.remote.autopush", name)
            .map_err(|e| ConfigError::Git {
                key: "dbguard.remote.autopush".into(),
                value: name.into(),
                message: e.message().to_string(),
            }),
        None => {
            let _ = config.remove("dbguard.remote.autopush");
            Ok(())
        }
    }
}

fn local_config(repo: &Repo) -> Result<git2::Config, ConfigError> {
    repo.git
        .config()
        .and_then(|c| c.open_level(git2::ConfigLevel::Local))
        .map_err(|e| ConfigError::Git {
            key: "dbguard.remote".into(),
            value: String::new(),
            message: format!("cannot open the repository's git config: {}", e.message()),
        })
}

/// git config as git itself sees it for this process: the repository's files (through
/// libgit2) overlaid with `git -c key=value` options, which git hands to hooks and child
/// processes in `GIT_CONFIG_PARAMETERS` / `GIT_CONFIG_COUNT` and libgit2 does not read.
struct GitConfig {
    files: Option<git2::Config>,
    /// `(lowercased key, value)` from the command line, later entries winning.
    command_line: Vec<(String, Option<String>)>,
}

impl GitConfig {
    fn new(repo: &Repo) -> GitConfig {
        let mut command_line = std::env::var("GIT_CONFIG_PARAMETERS")
            .map(|text| parse_config_parameters(&text))
            .unwrap_or_default();
        let count: usize = std::env::var("GIT_CONFIG_COUNT")
            .ok()
            .and_then(|n| n.trim().parse().ok())
            .unwrap_or(0);
        for i in 0..count {
            if let Ok(key) = std::env::var(format!("GIT_CONFIG_KEY_{i}")) {
                let value = std::env::var(format!("GIT_CONFIG_VALUE_{i}")).ok();
                command_line.push((key.to_ascii_lowercase(), value));
            }
        }
        GitConfig {
            files: repo.git.config().ok(),
            command_line,
        }
    }

    fn string(&self, key: &str) -> Option<String> {
        let lower = key.to_ascii_lowercase();
        if let Some((_, value)) = self.command_line.iter().rev().find(|(k, _)| *k == lower) {
            // `-c key` without a value means "true" to git.
            return Some(value.clone().unwrap_or_else(|| "true".into()));
        }
        self.files.as_ref()?.get_string(key).ok()
    }

    /// The names `N` for which a key `<prefix>N<suffix>` is set (e.g. every remote with
    /// a url: `dbguard.remote.` … `.url`), from the files and the command line.
    fn subsections(&self, prefix: &str, suffix: &str) -> Vec<String> {
        let (prefix, suffix) = (prefix.to_ascii_lowercase(), suffix.to_ascii_lowercase());
        let name_of = |key: &str| -> Option<String> {
            // git lowercases section and key names, not subsection names.
            let lower = key.to_ascii_lowercase();
            if lower.starts_with(&prefix)
                && lower.ends_with(&suffix)
                && lower.len() > prefix.len() + suffix.len()
            {
                Some(key[prefix.len()..key.len() - suffix.len()].to_string())
            } else {
                None
            }
        };
        let mut names: Vec<String> = self
            .command_line
            .iter()
            .filter_map(|(key, _)| name_of(key))
            .collect();
        if let Some(files) = &self.files
            && let Ok(mut entries) = files.entries(None)
        {
            while let Some(Ok(entry)) = entries.next() {
                if let Some(name) = entry.name().ok().and_then(&name_of) {
                    names.push(name);
                }
            }
        }
        names.sort();
        names.dedup();
        names
    }

    fn path(&self, key: &str) -> Option<PathBuf> {
        let lower = key.to_ascii_lowercase();
        if let Some((_, Some(value))) = self.command_line.iter().rev().find(|(k, _)| *k == lower) {
            return Some(expand_home(value));
        }
        self.files.as_ref()?.get_path(key).ok()
    }
}

fn expand_home(value: &str) -> PathBuf {
    match (value.strip_prefix("~/"), std::env::var_os("HOME")) {
        (Some(rest), Some(home)) => PathBuf::from(home).join(rest),
        _ => PathBuf::from(value),
    }
}

/// Parse git's `GIT_CONFIG_PARAMETERS`: space-separated shell-quoted words, either
/// `'key=value'` (older git) or `'key'='value'` / `'key'` (git ≥ 2.31).
fn parse_config_parameters(text: &str) -> Vec<(String, Option<String>)> {
    let mut entries = Vec::new();
    let mut chars = text.chars().peekable();
    // Read one single-quoted word, with git's `'\''` escape for a quote inside it.
    let quoted = |chars: &mut std::iter::Peekable<std::str::Chars<'_>>| -> Option<String> {
        chars.next_if_eq(&'\'')?;
        let mut word = String::new();
        loop {
            match chars.next()? {
                '\'' => {
                    // `'\''` (close, escaped quote, reopen) and `'\!'` continue the word.
                    if chars.peek() == Some(&'\\') {
                        chars.next();
                        word.push(chars.next()?);
                        chars.next_if_eq(&'\'')?;
                    } else {
                        return Some(word);
                    }
                }
                c => word.push(c),
            }
        }
    };
    loop {
        while chars.next_if_eq(&' ').is_some() {}
        if chars.peek().is_none() {
            break;
        }
        let Some(first) = quoted(&mut chars) else {
            break;
        };
        if chars.next_if_eq(&'=').is_some() {
            let value = quoted(&mut chars).unwrap_or_default();
            entries.push((first.to_ascii_lowercase(), Some(value)));
        } else if let Some((key, value)) = first.split_once('=') {
            entries.push((key.to_ascii_lowercase(), Some(value.to_string())));
        } else {
            entries.push((first.to_ascii_lowercase(), None));
        }
    }
    entries
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_git_config_parameters_in_both_formats() {
        assert_eq!(
            parse_config_parameters("'dbguard.precommit'='allow' 'core.bare'"),
            vec![
                ("dbguard.precommit".into(), Some("allow".into())),
                ("core.bare".into(), None)
            ]
        );
        assert_eq!(
            parse_config_parameters("'dbGuard.preCommit=warn'"),
            vec![("dbguard.precommit".into(), Some("warn".into()))]
        );
        assert_eq!(
            parse_config_parameters("'a.b'='it'\\''s'"),
            vec![("a.b".into(), Some("it's".into()))]
        );
    }
}
