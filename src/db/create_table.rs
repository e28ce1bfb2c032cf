//! SQL that came from outside (a Parquet file's metadata, a snapshot's schema) never runs
//! as it is: a `CREATE TABLE` statement is checked on a scratch connection first (exactly
//! one statement, creating exactly one table and doing nothing else), renamed there by
//! SQLite itself, and only SQLite's text of that one table runs on the target; every
//! connection that imports or restores tables runs under [`restrict`], which denies
//! `ATTACH`, `DROP`, triggers, views and pragmas that write.

use rusqlite::Connection;
use rusqlite::hooks::{AuthAction, AuthContext, Authorization};

use super::quote_ident;

/// Why a recorded `CREATE TABLE` statement was refused.
#[derive(Debug, thiserror::Error)]
pub(crate) enum CreateTableError {
    /// The text is not one `CREATE TABLE` statement of one ordinary table.
    #[error("the recorded table definition is not one CREATE TABLE statement ({reason})")]
    NotOneTable { reason: String },
    /// SQLite refused it (its message names the problem).
    #[error("the recorded table definition does not compile: {0}")]
    Sqlite(#[from] rusqlite::Error),
}

fn refused(reason: impl Into<String>) -> CreateTableError {
    CreateTableError::NotOneTable {
        reason: reason.into(),
    }
}

/// The statement that creates table `name` in `main` with the definition of the one
/// `CREATE TABLE` statement in `recorded`, as SQLite itself writes it. `recorded` runs
/// only on a private in-memory database, under an authorizer that allows creating one
/// table and nothing else; a second statement, a comment that hides one, `ATTACH`, a
/// trigger, a view or a virtual table is refused.
pub(crate) fn checked_create_table(recorded: &str, name: &str) -> Result<String, CreateTableError> {
    let mut scratch = Connection::open_in_memory()?;
    scratch.authorizer(Some(|context: AuthContext<'_>| {
        if creates_one_table_only(&context) {
            Authorization::Allow
        } else {
            Authorization::Deny
        }
    }))?;
    {
        // `prepare` refuses a statement followed by another one (rusqlite compiles the
        // tail: comments and white space alone pass).
        let mut statement = scratch.prepare(recorded).map_err(|e| match e {
            rusqlite::Error::MultipleStatement => refused("more than one statement"),
            rusqlite::Error::SqliteFailure(code, _)
                if code.code == rusqlite::ErrorCode::AuthorizationForStatementDenied =>
            {
                refused("it does more than create one table")
            }
            other => other.into(),
        })?;
        if statement.readonly() {
            return Err(refused("it creates nothing"));
        }
        statement.raw_execute()?;
    }
    scratch.authorizer(None::<fn(AuthContext<'_>) -> Authorization>)?;
    let created: Vec<(String, String)> = {
        let mut query = scratch.prepare(
            "SELECT type, name FROM sqlite_schema WHERE name NOT LIKE 'sqlite\\_%' ESCAPE '\\'",
        )?;
        query
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<Result<_, _>>()?
    };
    let original = match created.as_slice() {
        [(kind, table)] if kind == "table" => table.clone(),
        _ => return Err(refused("it does not create exactly one table")),
    };
    if original != name {
        // A rename that differs only in case would clash with itself: go through a
        // name no table has.
        let mut from = original.clone();
        if original.eq_ignore_ascii_case(name) {
            let step = "dbguard renaming";
            scratch.execute_batch(&format!(
                "ALTER TABLE main.{} RENAME TO {}",
                quote_ident(&from),
                quote_ident(step)
            ))?;
            from = step.to_string();
        }
        scratch.execute_batch(&format!(
            "ALTER TABLE main.{} RENAME TO {}",
            quote_ident(&from),
            quote_ident(name)
        ))?;
    }
    let sql: String = scratch.query_row(
        "SELECT sql FROM sqlite_schema WHERE type = 'table' AND name = ?1",
        [name],
        |r| r.get(0),
    )?;
    Ok(sql)
}

/// What the scratch connection lets a recorded statement do: create one table in
/// `main` (SQLite writes its schema row and any index a UNIQUE or PRIMARY KEY constraint
/// needs, reading the table's columns), and call functions in its defaults and checks.
fn creates_one_table_only(context: &AuthContext<'_>) -> bool {
    let in_main = context.database_name.is_none_or(|db| db == "main");
    match context.action {
        AuthAction::CreateTable { .. } => in_main,
        AuthAction::CreateIndex { index_name, .. } => {
            in_main && index_name.starts_with("sqlite_autoindex_")
        }
        AuthAction::Insert { table_name } | AuthAction::Update { table_name, .. } => {
            in_main && matches!(table_name, "sqlite_master" | "sqlite_schema")
        }
        // The new table's own columns (its CHECK constraints and key indexes): the
        // scratch database holds nothing else.
        AuthAction::Read { .. } => in_main,
        AuthAction::Function { .. } => true,
        _ => false,
    }
}

/// Deny, for the rest of this connection's life, everything an import or a table
/// restore never does: `ATTACH`/`DETACH`, dropping or altering anything, triggers,
/// views, virtual tables, and every pragma but the read-only ones that list a table's
/// columns and indexes. Statements that read and write rows, create tables and their
/// indexes, and transactions are allowed. Call it after the connection's own `ATTACH`.
pub(crate) fn restrict(conn: &mut Connection) -> rusqlite::Result<()> {
    conn.authorizer(Some(|context: AuthContext<'_>| {
        if allowed_while_loading(&context) {
            Authorization::Allow
        } else {
            Authorization::Deny
        }
    }))
}

/// Lift [`restrict`] (for the connection's own `DETACH` at the end).
pub(crate) fn unrestrict(conn: &mut Connection) -> rusqlite::Result<()> {
    conn.authorizer(None::<fn(AuthContext<'_>) -> Authorization>)
}

fn allowed_while_loading(context: &AuthContext<'_>) -> bool {
    match context.action {
        AuthAction::Select
        | AuthAction::Read { .. }
        | AuthAction::Insert { .. }
        | AuthAction::Update { .. }
        | AuthAction::Delete { .. }
        | AuthAction::Transaction { .. }
        | AuthAction::Savepoint { .. }
        | AuthAction::Function { .. }
        | AuthAction::Recursive => true,
        AuthAction::CreateTable { .. } | AuthAction::CreateIndex { .. } => {
            context.database_name.is_none_or(|db| db == "main")
        }
        AuthAction::Pragma { pragma_name, .. } => matches!(
            pragma_name,
            "table_info" | "table_xinfo" | "index_list" | "index_info" | "index_xinfo"
        ),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tables(conn: &Connection) -> Vec<String> {
        let mut q = conn
            .prepare("SELECT name FROM sqlite_schema WHERE type = 'table' ORDER BY name")
            .unwrap();
        q.query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    }

    #[test]
    fn one_table_is_renamed_with_its_constraints_kept() {
        let sql = checked_create_table(
            "CREATE TABLE \"a(b\" (id INTEGER PRIMARY KEY, name TEXT UNIQUE NOT NULL, \
             CHECK (length(name) > 0)) STRICT",
            "posts",
        )
        .unwrap();
        assert!(sql.starts_with("CREATE TABLE \"posts\""), "{sql}");
        assert!(sql.contains("UNIQUE") && sql.contains("STRICT"), "{sql}");
        // Case-only renames and unchanged names work too.
        assert!(
            checked_create_table("CREATE TABLE t (x)", "T")
                .unwrap()
                .contains("\"T\"")
        );
        assert_eq!(
            checked_create_table("CREATE TABLE t (x)", "t").unwrap(),
            "CREATE TABLE t (x)"
        );
    }

    #[test]
    fn a_comment_hides_nothing() {
        // What a `-- (` in a table definition did when the text was cut at the first `(`:
        // here SQLite reads the comment as a comment, and the table gets its real columns.
        let sql = checked_create_table(
            "CREATE TABLE t -- (x); DROP TABLE users; --\n (a INTEGER, b TEXT)",
            "t2",
        )
        .unwrap();
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch(&sql).unwrap();
        assert_eq!(tables(&conn), vec!["t2".to_string()]);
        let columns: i64 = conn
            .query_row("SELECT count(*) FROM pragma_table_info('t2')", [], |r| {
                r.get(0)
            })
            .unwrap();
        assert_eq!(columns, 2);
    }

    #[test]
    fn anything_but_one_table_is_refused() {
        for sql in [
            "CREATE TABLE t (x); DROP TABLE users",
            "CREATE TABLE t (x); ATTACH 'evil.db' AS e",
            "ATTACH '/tmp/dbguard-never.db' AS e",
            "DROP TABLE users",
            "CREATE VIEW v AS SELECT 1",
            "CREATE TRIGGER tr AFTER INSERT ON users BEGIN DELETE FROM users; END",
            "CREATE VIRTUAL TABLE f USING fts5(x)",
            "CREATE TEMP TABLE t (x)",
            "CREATE TABLE t AS SELECT 1 AS x",
            "SELECT 1",
            "PRAGMA writable_schema = ON",
            "",
            "-- nothing",
        ] {
            let result = checked_create_table(sql, "t");
            assert!(result.is_err(), "{sql:?} was accepted: {result:?}");
        }
        assert!(!std::path::Path::new("/tmp/dbguard-never.db").exists());
    }

    #[test]
    fn a_restricted_connection_cannot_attach_or_drop() {
        let dir = tempfile::tempdir().unwrap();
        let mut conn = Connection::open(dir.path().join("t.db")).unwrap();
        conn.execute_batch("CREATE TABLE users (id INTEGER PRIMARY KEY)")
            .unwrap();
        restrict(&mut conn).unwrap();
        let attached = dir.path().join("new.db");
        let attach = format!("ATTACH '{}' AS e", attached.display());
        assert!(conn.execute_batch(&attach).is_err());
        assert!(!attached.exists());
        assert!(conn.execute_batch("DROP TABLE users").is_err());
        assert!(conn.execute_batch("PRAGMA writable_schema = ON").is_err());
        // What an import does still works.
        conn.execute_batch("CREATE TABLE t (x); INSERT INTO t VALUES (1); DELETE FROM t")
            .unwrap();
        let columns: i64 = conn
            .query_row(
                "SELECT count(*) FROM pragma_table_xinfo('t', 'main')",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(columns, 1);
        unrestrict(&mut conn).unwrap();
        conn.execute_batch("DROP TABLE t").unwrap();
    }
}
