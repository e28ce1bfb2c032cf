//! `CommandError`: what a command reports when it fails: a message, its causes and a
//! hint saying what to do next. Domain errors become one here; `cli` prints it.

use std::error::Error as StdError;

use crate::config::ConfigError;
use crate::db::DbError;
use crate::repo::RepoError;
use crate::scan::ScanError;
use crate::store::StoreError;

#[derive(Debug)]
pub struct CommandError {
    pub message: String,
    pub causes: Vec<String>,
    pub hints: Vec<String>,
    /// Process exit code: 1 for user errors, or git's own code for wrapped commands.
    pub exit_code: u8,
}

impl CommandError {
    pub fn new(message: impl Into<String>) -> CommandError {
        CommandError {
            message: message.into(),
            causes: Vec::new(),
            hints: Vec::new(),
            exit_code: 1,
        }
    }

    pub fn hint(mut self, hint: impl Into<String>) -> CommandError {
        self.hints.push(hint.into());
        self
    }

    pub fn cause(mut self, cause: impl Into<String>) -> CommandError {
        self.causes.push(cause.into());
        self
    }

    /// Build from any error: its message plus the chain of sources as causes.
    pub fn from_error(error: &(dyn StdError + 'static)) -> CommandError {
        let mut result = CommandError::new(error.to_string());
        let mut source = error.source();
        while let Some(cause) = source {
            let text = cause.to_string();
            if !result.message.contains(&text) {
                result.causes.push(text);
            }
            source = cause.source();
        }
        result
    }
}

impl From<RepoError> for CommandError {
    fn from(error: RepoError) -> CommandError {
        let hint = match &error {
            RepoError::NotARepo(_) => {
                Some("run dbguard inside a git working tree, or pass -C <dir>")
            }
            RepoError::Bare(_) => Some(
                "dbguard protects databases in working trees; run it in a clone with a checkout",
            ),
            RepoError::Spawn(_) => Some("install git and make sure it is on PATH"),
            RepoError::OutsideWorktree { .. } => {
                Some("name a file inside this repository's working tree")
            }
            _ => None,
        };
        let result = CommandError::from_error(&error);
        match hint {
            Some(hint) => result.hint(hint),
            None => result,
        }
    }
}

impl From<DbError> for CommandError {
    fn from(error: DbError) -> CommandError {
        let hint = match &error {
            DbError::DuckDbLocked { pid, .. } => format!(
                "stop process {pid} (or let it run CHECKPOINT) and try again; `dbguard status` shows which databases are busy"
            ),
            DbError::Integrity { .. } | DbError::Sqlite { .. } | DbError::DuckDb { .. } => {
                "the file may be truncated or damaged; copy it aside (cp) before git touches it; `dbguard status` shows which databases dbguard can read".into()
            }
            DbError::NewerFormat { .. } => {
                "the file is not damaged: install a newer dbguard (its DuckDB reads newer files), and copy the file aside (cp) before git touches it".into()
            }
            DbError::Io { .. } => "check that the file exists and is readable".into(),
        };
        CommandError::from_error(&error).hint(hint)
    }
}

impl From<StoreError> for CommandError {
    fn from(error: StoreError) -> CommandError {
        match error {
            StoreError::Db(db) => db.into(),
            StoreError::Locked { .. } => CommandError::from_error(&error)
                .hint("wait for the other dbguard (a long snapshot or prune) to finish, then try again"),
            StoreError::Chunk(_) | StoreError::DigestMismatch { .. } => CommandError::from_error(&error)
                .hint("run `dbguard verify` to see every damaged snapshot; older snapshots may still be intact"),
            StoreError::ReadOnly { .. } => CommandError::from_error(&error).hint(
                "snapshots need a writable store: make it writable again, or point dbguard at a writable directory with `git config dbguard.store <dir>` (log, show, verify and restore --to still read this one)",
            ),
            StoreError::Full { .. } => CommandError::from_error(&error).hint(
                "free space on that disk, or move the store to a disk with room: `git config dbguard.store <dir>`",
            ),
            StoreError::NotADirectory { .. } => CommandError::from_error(&error).hint(
                "move that file out of the way, or point dbguard at a directory: `git config dbguard.store <dir>`",
            ),
            StoreError::Catalog(_) => CommandError::from_error(&error)
                .hint("check the disk and permissions of the store directory (`dbguard config` shows where it is)"),
            _ => CommandError::from_error(&error)
                .hint("check free disk space and permissions of the store directory (`dbguard config` shows where it is)"),
        }
    }
}

impl From<ScanError> for CommandError {
    fn from(error: ScanError) -> CommandError {
        let hint = match &error {
            ScanError::Missing { .. } => {
                "check the path; `dbguard status` lists the databases dbguard sees"
            }
            ScanError::NotDatabase { .. } => {
                "dbguard snapshots SQLite and DuckDB files, recognised by their header bytes"
            }
            ScanError::Outside { .. } => {
                "name a file or directory inside this repository's working tree"
            }
            ScanError::Io { .. } => "check the file's permissions",
        };
        CommandError::from_error(&error).hint(hint)
    }
}

impl From<ConfigError> for CommandError {
    fn from(error: ConfigError) -> CommandError {
        CommandError::from_error(&error).hint(
            "fix the setting, or remove it to use the default (`dbguard config` shows them all)",
        )
    }
}

impl From<crate::export::ExportError> for CommandError {
    fn from(error: crate::export::ExportError) -> CommandError {
        use crate::export::ExportError as E;
        let hint = match &error {
            E::OpenSqlite { .. } | E::OpenDuckDb { .. } | E::Sqlite { .. } | E::DuckDb { .. } => {
                "the database could not be read; `dbguard verify` checks the stored snapshots"
            }
            E::Io { .. } => "check free disk space and the permissions of that path",
            E::Parquet { .. } | E::Arrow { .. } => {
                "this is a bug in dbguard's export; please report it with the table's CREATE statement"
            }
            E::UnknownTable { .. } => "`dbguard show ID` lists the tables of a snapshot",
            E::Changed { .. } => "run the command again",
        };
        CommandError::from_error(&error).hint(hint)
    }
}

impl From<crate::import::ImportError> for CommandError {
    fn from(error: crate::import::ImportError) -> CommandError {
        use crate::import::ImportError as E;
        let hint = match &error {
            E::Open { .. } | E::Sqlite { .. } => {
                "the database could not be read; `dbguard verify` checks the stored snapshots"
            }
            E::Io { .. } => "check free disk space and the permissions of that path",
            E::Parquet { .. } | E::Arrow { .. } => {
                "this is a bug in dbguard's export; please report it with the table's CREATE statement"
            }
            E::Malformed { .. } | E::MissingColumn { .. } => {
                "import-table reads files written by `dbguard export`; check that the file is complete and matches the table"
            }
            E::Unsupported { .. } => {
                "load into a SQLite database, or read the Parquet file with DuckDB's read_parquet()"
            }
        };
        CommandError::from_error(&error).hint(hint)
    }
}
