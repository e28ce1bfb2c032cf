//! Settings, data only: the repo-shared `.dbguard.toml` and git config `dbguard.*`
//! (git config wins). Nothing read here is ever executed.
//!
//! The store location can only come from git config: a `.dbguard.toml` arrives with
//! other people's commits and must not be able to send snapshots elsewhere.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::repo::Repo;

pub const FILE_NAME: &str = ".dbguard.toml";

/// Where a setting's value came from, shown by `dbguard config`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Source {
    Default,
    File,
    GitConfig,
}

impl Source {
    pub fn describe(&self) -> &'static str {
        match self {
            Source::Default => "default",
            Source::File => FILE_NAME,
            Source::GitConfig => "git config",
        }
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct Setting<T> {
    pub value: T,
    pub source: Source,
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
pub enum PreCommitPolicy {
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
pub struct RetentionConfig {
    pub keep_last: Option<u32>,
    pub keep_hourly: Option<u32>,
    pub keep_daily: Option<u32>,
    pub keep_weekly: Option<u32>,
    pub keep_monthly: Option<u32>,
    pub keep_within: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    exclude: Option<Vec<String>>,
    retention: Option<RetentionConfig>,
    pre_commit: Option<PreCommitPolicy>,
}

#[derive(Clone, Debug, Serialize)]
pub struct Settings {
    pub store: Setting<PathBuf>,
    pub exclude: Setting<Vec<String>>,
    pub retention: Setting<RetentionConfig>,
    pub pre_commit: Setting<PreCommitPolicy>,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{path} is not valid: {message}")]
    File { path: PathBuf, message: String },
    #[error("git config {key} = {value:?} is not valid: {message}")]
    Git {
        key: String,
        value: String,
        message: String,
    },
}

pub fn default_excludes() -> Vec<String> {
    ["node_modules", ".venv", "venv", "__pycache__", ".tox"]
        .map(String::from)
        .to_vec()
}

impl Settings {
    pub fn load(repo: &Repo) -> Result<Settings, ConfigError> {
        let mut settings = Settings {
            store: Setting::default(repo.default_store_dir()),
            exclude: Setting::default(default_excludes()),
            retention: Setting::default(RetentionConfig {
                keep_last: Some(10),
                ..RetentionConfig::default()
            }),
            pre_commit: Setting::default(PreCommitPolicy::Refuse),
        };
        let file = repo.worktree.join(FILE_NAME);
        if let Ok(text) = std::fs::read_to_string(&file) {
            let parsed: FileConfig = toml::from_str(&text).map_err(|e| ConfigError::File {
                path: file.clone(),
                message: e.message().to_string(),
            })?;
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
            if let Some(policy) = parsed.pre_commit {
                settings.pre_commit = Setting {
                    value: policy,
                    source: Source::File,
                };
            }
        }
        settings.apply_git_config(repo)?;
        Ok(settings)
    }

    fn apply_git_config(&mut self, repo: &Repo) -> Result<(), ConfigError> {
        let Ok(config) = repo.git.config() else {
            return Ok(());
        };
        if let Ok(store) = config.get_path("dbguard.store") {
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
        if let Ok(text) = config.get_string("dbguard.precommit") {
            let policy = PreCommitPolicy::parse(&text).ok_or_else(|| ConfigError::Git {
                key: "dbguard.precommit".into(),
                value: text.clone(),
                message: "expected refuse, warn or allow".into(),
            })?;
            self.pre_commit = Setting {
                value: policy,
                source: Source::GitConfig,
            };
        }
        if let Ok(text) = config.get_string("dbguard.exclude") {
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
            if let Ok(value) = config.get_i64(key) {
                *slot = Some(u32::try_from(value).map_err(|_| ConfigError::Git {
                    key: key.into(),
                    value: value.to_string(),
                    message: "expected a non-negative number".into(),
                })?);
                retention_from_git = true;
            }
        }
        if let Ok(within) = config.get_string("dbguard.keepWithin") {
            retention.keep_within = Some(within);
            retention_from_git = true;
        }
        if retention_from_git {
            self.retention = Setting {
                value: retention,
                source: Source::GitConfig,
            };
        }
        Ok(())
    }

    /// Whether the store lives inside the worktree (then scans must skip it).
    pub fn store_in(&self, worktree: &Path) -> bool {
        self.store.value.starts_with(worktree)
    }
}
