//! `CommandError`: what a command reports when it fails. It keeps the real error (and
//! so its `source()` chain), the hints that say what to do next, and a kind that decides
//! the exit code. Domain errors become one here, with their hints; [`CommandError::report`]
//! is the one place that prints an error.

use std::error::Error as StdError;

use crate::config::ConfigError;
use crate::db::DbError;
use crate::git::RepoError;
use crate::remote::RemoteError;
use crate::scan::ScanError;
use crate::store::StoreError;
use crate::store::replica::ReplicaError;
use crate::ui::Ui;

/// What kind of failure, and so which exit code: the one table of them. A wrapped git's
/// own exit code is no error of dbguard's: the guard returns it as its result, unchanged.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ErrorKind {
    /// The command could not do what was asked (bad input, missing file, damaged store).
    User,
    /// The command line itself is wrong (clap's parse errors).
    Usage,
    /// A deliberate refusal a script should tell apart: the pre-commit hook refusing a
    /// commit, a snapshot that is only partial.
    Refused,
    /// `dbguard status` found a database that shrank, vanished or became unreadable
    /// since its baseline snapshot: what cron and monitoring alert on.
    Loss,
    /// dbguard itself went wrong (a panic caught at the top): a bug to report, not the
    /// user's input. 70 is `EX_SOFTWARE` of sysexits.h.
    Internal,
    /// The reader of dbguard's output went away (`dbguard log | head`): the shell's own
    /// 128 + SIGPIPE, the code a program killed by SIGPIPE would have had. Not printed.
    BrokenPipe,
}

impl ErrorKind {
    pub(crate) fn exit_code(self) -> u8 {
        match self {
            ErrorKind::User => 1,
            ErrorKind::Usage => 2,
            ErrorKind::Refused => 3,
            ErrorKind::Loss => 4,
            ErrorKind::Internal => 70,
            ErrorKind::BrokenPipe => 141,
        }
    }
}

type BoxedError = Box<dyn StdError + Send + Sync + 'static>;

/// The hint of an error whose command has none of its own.
pub const GENERAL_HINT: &str =
    "`dbguard <command> --help` shows usage and examples; `dbguard status` shows what dbguard sees";

#[derive(Debug)]
pub(crate) struct CommandError {
    kind: ErrorKind,
    /// The headline error; its `source()` chain is printed as "Caused by" lines.
    error: BoxedError,
    /// Further "Caused by" lines the command adds (one per damaged snapshot, say).
    details: Vec<String>,
    hints: Vec<String>,
}

impl CommandError {
    /// A failure described by `message` alone.
    pub(crate) fn new(message: impl Into<String>) -> CommandError {
        CommandError::from_boxed(message.into().into())
    }

    /// A failure headlined by `message` whose cause is `source` (and its chain), printed
    /// as "Caused by" lines instead of flattened into the headline.
    pub(crate) fn with_source<E: StdError + Send + Sync + 'static>(
        message: impl Into<String>,
        source: E,
    ) -> CommandError {
        CommandError::from_source(Headline {
            message: message.into(),
            source: Box::new(source),
        })
    }

    /// A failure whose headline is `error` and whose causes are its `source()` chain.
    pub(crate) fn from_source<E: StdError + Send + Sync + 'static>(error: E) -> CommandError {
        CommandError::from_boxed(Box::new(error))
    }

    fn from_boxed(error: BoxedError) -> CommandError {
        CommandError {
            kind: ErrorKind::User,
            error,
            details: Vec::new(),
            hints: Vec::new(),
        }
    }

    pub(crate) fn hint(mut self, hint: impl Into<String>) -> CommandError {
        self.hints.push(hint.into());
        self
    }

    pub(crate) fn cause(mut self, cause: impl Into<String>) -> CommandError {
        self.details.push(cause.into());
        self
    }

    pub(crate) fn with_kind(mut self, kind: ErrorKind) -> CommandError {
        self.kind = kind;
        self
    }

    pub(crate) fn exit_code(&self) -> u8 {
        self.kind.exit_code()
    }

    /// The one-line headline.
    pub(crate) fn message(&self) -> String {
        self.error.to_string()
    }

    pub(crate) fn hints(&self) -> &[String] {
        &self.hints
    }

    /// The causes under the headline: the source chain (minus text the headline already
    /// says, as thiserror messages often embed their source), then the added details.
    pub(crate) fn causes(&self) -> Vec<String> {
        let message = self.message();
        let mut causes = Vec::new();
        let mut source = self.error.source();
        while let Some(cause) = source {
            let text = cause.to_string();
            if !message.contains(&text) {
                causes.push(text);
            }
            source = cause.source();
        }
        causes.extend(self.details.iter().cloned());
        causes
    }

    /// Print the error, its causes and hints (the one place errors are printed); a
    /// command without its own hint gets the general one.
    pub(crate) fn report(&self, ui: &Ui) {
        let general = [GENERAL_HINT.to_string()];
        let hints = if self.hints.is_empty() {
            &general[..]
        } else {
            &self.hints[..]
        };
        ui.error(&self.message(), &self.causes(), hints);
    }

    /// Print the error and causes without hints (one failure among several, where the
    /// summary after them says what to do).
    pub(crate) fn report_without_hints(&self, ui: &Ui) {
        ui.error(&self.message(), &self.causes(), &[]);
    }
}

/// A headline with a cause under it: what [`CommandError::with_source`] builds.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
struct Headline {
    message: String,
    #[source]
    source: BoxedError,
}

impl From<RepoError> for CommandError {
    fn from(error: RepoError) -> CommandError {
        let hint = match &error {
            RepoError::NotARepo(_) => Some(
                "run it inside a git working tree (or pass -C <dir>); outside git, snapshot, restore, export, push and fetch work with a store of their own (`--store DIR`, README \"Without git\")",
            ),
            RepoError::Bare(_) => Some(
                "dbguard protects databases in working trees; run it in a clone with a checkout",
            ),
            RepoError::Spawn(_) => Some("install git and make sure it is on PATH"),
            RepoError::OutsideWorktree { .. } => {
                Some("name a file inside this repository's working tree")
            }
            RepoError::BadPath(_) => Some(
                "name the file relative to the working tree (or an absolute path inside it), without `..` beyond its top",
            ),
            RepoError::GitDir(_) => Some(
                "git's own files are not databases dbguard guards; name a file in the working tree",
            ),
            // git's own message is in the headline; the general hint follows it.
            RepoError::Git { .. } => None,
        };
        let result = CommandError::from_source(error);
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
        CommandError::from_source(error).hint(hint)
    }
}

impl From<StoreError> for CommandError {
    fn from(error: StoreError) -> CommandError {
        match error {
            StoreError::Db(db) => db.into(),
            StoreError::Locked { .. } => CommandError::from_source(error).hint(
                "that process is stuck (stopped or hung): let it go on (`kill -CONT`) or end it, then run this dbguard command again",
            ),
            StoreError::Chunk(_) | StoreError::DigestMismatch { .. } => CommandError::from_source(error)
                .hint("run `dbguard verify` to see every damaged snapshot; older snapshots may still be intact"),
            StoreError::ReadOnly { .. } => CommandError::from_source(error).hint(
                "snapshots need a writable store: make it writable again, or point dbguard at a writable directory with `git config dbguard.store <dir>` (log, show, verify and restore --to still read this one)",
            ),
            StoreError::Full { .. } => CommandError::from_source(error).hint(
                "free space on that disk, or move the store to a disk with room: `git config dbguard.store <dir>`",
            ),
            StoreError::NotADirectory { .. } => CommandError::from_source(error).hint(
                "move that file out of the way, or point dbguard at a directory: `git config dbguard.store <dir>`",
            ),
            StoreError::Catalog(_) => CommandError::from_source(error)
                .hint("check the disk and permissions of the store directory (`dbguard config` shows where it is)"),
            StoreError::Io { .. } => CommandError::from_source(error)
                .hint("check free disk space and permissions of the store directory (`dbguard config` shows where it is)"),
            StoreError::NoSuchSnapshot(_) => CommandError::from_source(error)
                .hint("`dbguard log` lists the snapshots and their numbers"),
        }
    }
}

impl From<RemoteError> for CommandError {
    fn from(error: RemoteError) -> CommandError {
        let hint = error.hint();
        let result = CommandError::from_source(error);
        match hint {
            Some(hint) => result.hint(hint),
            None => result,
        }
    }
}

impl From<ReplicaError> for CommandError {
    fn from(error: ReplicaError) -> CommandError {
        match error {
            ReplicaError::Store(e) => e.into(),
            ReplicaError::Remote(e) => e.into(),
            ReplicaError::Claimed { .. } => CommandError::from_source(error).hint(
                "this store is a copy (cp of the clone or of .git/dbguard): give it its own space on the remote with `dbguard push --new-identity`",
            ),
            ReplicaError::Busy => CommandError::from_source(error)
                .hint("wait for it to finish (a push in the background after a snapshot), then try again"),
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
        CommandError::from_source(error).hint(hint)
    }
}

impl From<ConfigError> for CommandError {
    fn from(error: ConfigError) -> CommandError {
        CommandError::from_source(error).hint(
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
        CommandError::from_source(error).hint(hint)
    }
}

impl From<crate::import::ImportError> for CommandError {
    fn from(error: crate::import::ImportError) -> CommandError {
        use crate::import::ImportError as E;
        let hint = match &error {
            E::Open { .. } => {
                "check that the target is a SQLite database you can write (or a new path)"
            }
            // The import runs in one transaction: a failed one changed nothing.
            E::Sqlite { .. } => {
                "nothing was loaded (the import runs in one transaction); when the table already holds these rows, --replace replaces them instead of appending"
            }
            E::Io { .. } => "check free disk space and the permissions of that path",
            // The file may come from any tool: nothing here says dbguard wrote it.
            E::Parquet { .. } | E::Arrow { .. } | E::Damaged { .. } => {
                "nothing was loaded; check that the file is a complete Parquet file (DuckDB: SELECT * FROM parquet_metadata('FILE') shows its codecs and types)"
            }
            E::Definition { .. } | E::Decltype { .. } => {
                "nothing was loaded; create the table yourself first: import-table then only appends the file's rows to it"
            }
            E::Malformed { .. } | E::MissingColumn { .. } => {
                "import-table reads files written by `dbguard export`; check that the file is complete and matches the table"
            }
            E::Unsupported { .. } => {
                "load into a SQLite database, or read the Parquet file with DuckDB's read_parquet()"
            }
            E::Duplicate { .. } => {
                "nothing was loaded (the import runs in one transaction); --replace replaces the table's rows with the file's, --table NAME loads into another table"
            }
        };
        CommandError::from_source(error).hint(hint)
    }
}

impl From<crate::restore::RestoreError> for CommandError {
    fn from(error: crate::restore::RestoreError) -> CommandError {
        use crate::restore::RestoreError as E;
        use crate::ui::shell_quote;
        let unchanged_hint = |path: &str| {
            format!(
                "the live database was not changed; an older snapshot may be intact (`dbguard log {path}`)"
            )
        };
        // Errors of the layers below keep their own hints; the restore adds what it knows.
        let error = match error {
            E::Db(source) => return source.into(),
            E::Store(source) => return source.into(),
            E::ReadBack { path, source } => {
                return CommandError::from(source).hint(unchanged_hint(&path));
            }
            E::ImageDamaged { path, source } => {
                return CommandError::from(source).hint(unchanged_hint(&path));
            }
            E::UndoSnapshot { source } => return CommandError::from(source).hint(
                "dbguard snapshots the current file before restoring so the restore can be undone; nothing was changed",
            ),
            other => other,
        };
        let kept = |note: &Option<String>| {
            note.as_deref()
                .map(|n| format!(" ({n})"))
                .unwrap_or_default()
        };
        let hint = match &error {
            E::OutsideWorktree { .. } => Some("restore it elsewhere with --to <path>".to_string()),
            E::InsideGitDir { .. } => Some(
                "dbguard never writes into git's own files; restore it elsewhere with --to <path>"
                    .into(),
            ),
            E::Symlink { .. } => Some("remove the symlink or restore with --to <path>".into()),
            E::ImageDiffers { path, .. } => Some(unchanged_hint(path)),
            E::Io { .. } => Some(
                "check permissions and free disk space; the live database was not changed".into(),
            ),
            E::DestinationExists { .. } => {
                Some("name a new file, or remove that one first".into())
            }
            E::NotDurable { .. } => Some(
                "the restored file is in place; until the directory is flushed, a power loss could bring back the previous one".into(),
            ),
            E::TablesIntoUnrestorable { path, id, .. } => Some(format!(
                "restore the whole database (without --table): dbguard restore {} --from {id}",
                shell_quote(path)
            )),
            E::FoldFailed { path, what, .. } => Some(format!(
                "nothing was restored and nothing was lost: {path} still holds its previous data, its {what} kept; try again when no other process uses it and the disk has room"
            )),
            E::ClearSidecar { .. } => Some(
                "nothing was restored; remove or move that file, then run the restore again".into(),
            ),
            E::KeepAside { .. } => Some(
                "nothing was restored; free disk space or fix permissions, then run the restore again".into(),
            ),
            E::OpenedDuring { kept: note, .. } => Some(format!(
                "nothing was restored{}; stop that process, then run the restore again",
                kept(note)
            )),
            E::PutInPlace { path, kept: note, .. } => Some(format!(
                "nothing was restored{}; the previous file is still at {path}",
                kept(note)
            )),
            E::Sqlite { .. } => Some(
                "the snapshot is intact; try again when no other process holds a write lock".into(),
            ),
            E::OpenAndUnrestorable { .. } => Some(
                "nothing was changed; stop that process, then run the restore again".into(),
            ),
            E::StayedLocked { .. } => {
                Some("stop the app writing to it, then run the restore again".into())
            }
            E::DuckDbOpen { pid, .. } => Some(format!(
                "nothing was changed; stop process {pid} and run the restore again"
            )),
            E::Mismatch { .. } => Some(
                "another process may have written to it meanwhile; `dbguard diff` shows the difference".into(),
            ),
            E::NoSuchTable { tables, .. } => Some(format!("its tables are: {}", tables.join(", "))),
            E::TablesIntoMissing { .. } => {
                Some("restore the whole database (without --table) first".into())
            }
            E::SqliteTables { .. } => {
                Some("nothing was changed (the table restore runs in one transaction)".into())
            }
            E::Definition { .. } => Some(
                "nothing was changed; create the table yourself in the live database, then restore its rows with --table again (or restore the whole database)".into(),
            ),
            E::ColumnsChanged { .. } => Some(
                "restore the whole database, or restore the snapshot elsewhere with --to and copy what you need".into(),
            ),
            E::DuckDbTables { .. } => Some(
                "nothing was changed (the table restore runs in one transaction); is another process holding the file?".into(),
            ),
            E::ShortAfterBackup { .. } | E::TableMismatch { .. } => None,
            E::Db(_) | E::Store(_) | E::ReadBack { .. } | E::ImageDamaged { .. } | E::UndoSnapshot { .. } => None,
        };
        let result = CommandError::from_source(error);
        match hint {
            Some(hint) => result.hint(hint),
            None => result,
        }
    }
}
