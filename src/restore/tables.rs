//! Restoring some tables: their rows replaced from the snapshot in one transaction, the
//! rest of the live database left as it is.

use std::path::Path;
use std::time::Duration;

use super::RestoreError;
use crate::db::{self, Census, DbKind, create_table, quote_ident};
use crate::store::SnapshotInfo;

/// Replace the rows of some tables from the snapshot, in one transaction.
pub(super) fn restore_tables(
    snapshot: &SnapshotInfo,
    image: &Path,
    live: &Path,
    tables: &[String],
) -> Result<(&'static str, Census), RestoreError> {
    for table in tables {
        if !snapshot.census.tables.contains_key(table) {
            return Err(RestoreError::NoSuchTable {
                id: snapshot.id,
                table: table.clone(),
                tables: snapshot.census.tables.keys().cloned().collect(),
            });
        }
    }
    if !live.exists() {
        return Err(RestoreError::TablesIntoMissing {
            path: snapshot.path.clone(),
        });
    }
    match snapshot.kind {
        DbKind::Sqlite => restore_sqlite_tables(snapshot, image, live, tables)?,
        DbKind::DuckDb => restore_duckdb_tables(image, live, tables)?,
    }
    let census = db::census_live(snapshot.kind, live)?;
    for table in tables {
        if census.tables.get(table) != snapshot.census.tables.get(table) {
            return Err(RestoreError::TableMismatch {
                table: table.clone(),
                id: snapshot.id,
            });
        }
    }
    Ok(("tables replaced in one transaction", census))
}

fn restore_sqlite_tables(
    snapshot: &SnapshotInfo,
    image: &Path,
    live: &Path,
    tables: &[String],
) -> Result<(), RestoreError> {
    let fail = |error: rusqlite::Error| RestoreError::SqliteTables {
        path: snapshot.path.clone(),
        error,
    };
    let mut conn = rusqlite::Connection::open_with_flags(
        live,
        rusqlite::OpenFlags::SQLITE_OPEN_READ_WRITE | rusqlite::OpenFlags::SQLITE_OPEN_URI,
    )
    .map_err(fail)?;
    conn.busy_timeout(Duration::from_secs(30)).map_err(fail)?;
    conn.execute(
        "ATTACH DATABASE ?1 AS dbguard_snapshot",
        [db::sqlite::uri(image, "immutable=1")],
    )
    .map_err(fail)?;
    // The snapshot is attached: from here on nothing may attach, drop or alter anything
    // (a snapshot fetched from a remote is someone else's bytes).
    create_table::restrict(&mut conn).map_err(fail)?;
    let tx = conn
        .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
        .map_err(fail)?;
    for table in tables {
        let quoted = quote_ident(table);
        let columns = |schema: &str| -> Result<Vec<String>, RestoreError> {
            let mut stmt = tx
                .prepare(&format!(
                    "SELECT name FROM pragma_table_info(?1, '{schema}')"
                ))
                .map_err(fail)?;
            let names = stmt
                .query_map([table], |r| r.get::<_, String>(0))
                .map_err(fail)?
                .collect::<Result<Vec<_>, _>>()
                .map_err(fail)?;
            Ok(names)
        };
        let live_columns = columns("main")?;
        let snapshot_columns = columns("dbguard_snapshot")?;
        if live_columns.is_empty() {
            let sql: String = tx
                .query_row(
                    "SELECT sql FROM dbguard_snapshot.sqlite_schema WHERE type = 'table' AND name = ?1",
                    [table],
                    |r| r.get(0),
                )
                .map_err(fail)?;
            // Never the recorded text itself: one CREATE TABLE, checked on a scratch
            // database, as SQLite writes it.
            let create = create_table::checked_create_table(&sql, table).map_err(|source| {
                RestoreError::Definition {
                    table: table.clone(),
                    id: snapshot.id,
                    source,
                }
            })?;
            tx.prepare(&create)
                .and_then(|mut statement| statement.raw_execute())
                .map_err(fail)?;
        } else if live_columns != snapshot_columns {
            return Err(RestoreError::ColumnsChanged {
                table: table.clone(),
                id: snapshot.id,
                live: live_columns,
                snapshot: snapshot_columns,
            });
        }
        tx.execute(&format!("DELETE FROM main.{quoted}"), [])
            .map_err(fail)?;
        tx.execute(
            &format!("INSERT INTO main.{quoted} SELECT * FROM dbguard_snapshot.{quoted}"),
            [],
        )
        .map_err(fail)?;
    }
    tx.commit().map_err(fail)?;
    create_table::unrestrict(&mut conn).map_err(fail)?;
    conn.execute("DETACH DATABASE dbguard_snapshot", [])
        .map_err(fail)?;
    Ok(())
}

fn restore_duckdb_tables(image: &Path, live: &Path, tables: &[String]) -> Result<(), RestoreError> {
    let fail = |e: duckdb::Error| RestoreError::DuckDbTables {
        path: live.to_path_buf(),
        reason: e.to_string().lines().next().unwrap_or_default().to_string(),
    };
    let conn = duckdb::Connection::open(live).map_err(fail)?;
    let image_text = image.to_string_lossy().replace('\'', "''");
    conn.execute_batch(&format!(
        "ATTACH '{image_text}' AS dbguard_snapshot (READ_ONLY)"
    ))
    .map_err(fail)?;
    let mut statements = String::from("BEGIN TRANSACTION;");
    for table in tables {
        let (schema, name) = table.split_once('.').unwrap_or(("main", table));
        let qualified = format!("{}.{}", quote_ident(schema), quote_ident(name));
        statements.push_str(&format!(
            "CREATE TABLE IF NOT EXISTS {qualified} AS SELECT * FROM dbguard_snapshot.{qualified} LIMIT 0;
             DELETE FROM {qualified};
             INSERT INTO {qualified} SELECT * FROM dbguard_snapshot.{qualified};"
        ));
    }
    statements.push_str("COMMIT;");
    if let Err(error) = conn.execute_batch(&statements) {
        let _ = conn.execute_batch("ROLLBACK");
        return Err(fail(error));
    }
    conn.execute_batch("DETACH dbguard_snapshot")
        .map_err(fail)?;
    Ok(())
}
