//! Exporting the tables of a SQLite image: list them, then per table profile its columns
//! (pass 1, only when Parquet needs a fixed type per column) and stream its rows into
//! record batches and JSON lines (pass 2).

use std::fs;
use std::path::Path;
use std::sync::Arc;

use arrow::datatypes::{Field, Schema, SchemaRef};
use parquet::file::metadata::KeyValue;
use rusqlite::Connection;

use super::columns::{BatchBuilder, ColPlan, ColProfile};
use super::json::write_sqlite_row;
use super::sinks::{TableSinks, with_sinks};
use super::{
    ExportError, ExportFormat, ExportOptions, ExportReport, META_ENCODING_PREFIX,
    META_SQLITE_DECLTYPE_PREFIX, META_SQLITE_SQL, META_TABLE, SkippedTable, TableExport,
    TableInImage, Tally, io_err, select_tables,
};
use crate::db::{self, quote_ident};

/// One column as `SELECT *` shows it, and how it is written.
struct SqliteColumn {
    name: String,
    decltype: String,
    plan: ColPlan,
}

pub(super) fn export(
    image: &Path,
    dest_dir: &Path,
    opts: &ExportOptions,
    tally: &Tally<'_>,
) -> Result<ExportReport, ExportError> {
    let conn = open_image(image)?;
    let (available, skipped) = list_tables(&conn, image)?;
    let (tables, skipped) = select_tables(image, &available, &skipped, opts)?;
    let mut report = ExportReport {
        tables: Vec::new(),
        skipped,
    };
    for table in tables {
        let at = TableInImage {
            image,
            table: &table,
        };
        report
            .tables
            .push(export_table(&conn, at, dest_dir, opts, tally)?);
    }
    Ok(report)
}

/// Opens the image read-only; a file that is missing or not a database fails here.
fn open_image(image: &Path) -> Result<Connection, ExportError> {
    // A missing file would otherwise surface as a confusing "unable to open" later on.
    fs::metadata(image).map_err(io_err(image))?;
    db::sqlite::open_image(image).map_err(|source| ExportError::OpenSqlite {
        path: image.to_path_buf(),
        source,
    })
}

/// The ordinary tables in schema order, and the virtual and shadow tables, which are
/// skipped (their rows live in other tables or outside the file).
fn list_tables(
    conn: &Connection,
    image: &Path,
) -> Result<(Vec<String>, Vec<SkippedTable>), ExportError> {
    let sql_err = TableInImage {
        image,
        table: "(schema)",
    }
    .sqlite_err();
    let mut stmt = conn
        .prepare(
            "SELECT l.name, l.type, coalesce(s.sql, '') FROM pragma_table_list AS l \
             LEFT JOIN sqlite_schema AS s ON s.name = l.name AND s.type = 'table' \
             WHERE l.schema = 'main' AND l.type IN ('table', 'virtual', 'shadow') \
             AND l.name NOT LIKE 'sqlite\\_%' ESCAPE '\\' ORDER BY s.rowid",
        )
        .map_err(&sql_err)?;
    let rows = stmt
        .query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
            ))
        })
        .map_err(&sql_err)?;
    let mut available = Vec::new();
    let mut skipped = Vec::new();
    for row in rows {
        let (name, ty, sql) = row.map_err(&sql_err)?;
        match ty.as_str() {
            "table" => available.push(name),
            "virtual" => skipped.push(SkippedTable {
                table: name,
                reason: format!("virtual table ({})", sql.trim()),
            }),
            _ => skipped.push(SkippedTable {
                table: name,
                reason: "shadow table of a virtual table".to_string(),
            }),
        }
    }
    Ok((available, skipped))
}

fn export_table(
    conn: &Connection,
    at: TableInImage<'_>,
    dest_dir: &Path,
    opts: &ExportOptions,
    tally: &Tally<'_>,
) -> Result<TableExport, ExportError> {
    let create_sql: String = conn
        .query_row(
            "SELECT coalesce(sql, '') FROM sqlite_schema WHERE type = 'table' AND name = ?1",
            [at.table],
            |r| r.get(0),
        )
        .map_err(at.sqlite_err())?;
    let mut columns = table_columns(conn, at)?;
    let select = format!(
        "SELECT {} FROM main.{}",
        columns
            .iter()
            .map(|c| quote_ident(&c.name))
            .collect::<Vec<_>>()
            .join(", "),
        quote_ident(at.table)
    );
    // Only Parquet needs a fixed type per column: JSON keeps each value's class anyway.
    if opts.formats.contains(&ExportFormat::Parquet) {
        let profiles = profile_columns(conn, at, &select, columns.len(), tally)?;
        for (c, p) in columns.iter_mut().zip(profiles) {
            c.plan = ColPlan::for_profile(p, &c.decltype);
        }
    }
    let schema: SchemaRef = Arc::new(Schema::new(
        columns
            .iter()
            .map(|c| Field::new(c.name.clone(), c.plan.data_type(), true))
            .collect::<Vec<_>>(),
    ));
    let kv = parquet_metadata(at.table, create_sql, &columns);
    let sinks = TableSinks::open(dest_dir, at.table, &schema, kv, opts)?;
    let mut rows = 0;
    let files = with_sinks(sinks, |sinks| {
        rows = write_rows(conn, at, &select, &columns, schema, sinks, opts, tally)?;
        Ok(())
    })?;
    Ok(TableExport {
        table: at.table.to_string(),
        rows,
        files,
    })
}

/// The columns `SELECT *` would show (hidden = 0 ordinary, 2/3 generated), not yet
/// profiled.
fn table_columns(
    conn: &Connection,
    at: TableInImage<'_>,
) -> Result<Vec<SqliteColumn>, ExportError> {
    let mut stmt = conn
        .prepare(
            "SELECT name, coalesce(type, '') FROM pragma_table_xinfo(?1, 'main') \
             WHERE hidden IN (0, 2, 3) ORDER BY cid",
        )
        .map_err(at.sqlite_err())?;
    let columns: Vec<SqliteColumn> = stmt
        .query_map([at.table], |r| {
            Ok(SqliteColumn {
                name: r.get(0)?,
                decltype: r.get(1)?,
                plan: ColPlan::AllNull,
            })
        })
        .map_err(at.sqlite_err())?
        .collect::<Result<_, _>>()
        .map_err(at.sqlite_err())?;
    if columns.is_empty() {
        return Err(at.changed("table has no columns".to_string()));
    }
    Ok(columns)
}

/// Pass 1: the storage classes present in each column of `select`.
fn profile_columns(
    conn: &Connection,
    at: TableInImage<'_>,
    select: &str,
    count: usize,
    tally: &Tally<'_>,
) -> Result<Vec<ColProfile>, ExportError> {
    let mut profiles = vec![ColProfile::default(); count];
    let mut stmt = conn.prepare(select).map_err(at.sqlite_err())?;
    let mut rows = stmt.query([]).map_err(at.sqlite_err())?;
    while let Some(row) = rows.next().map_err(at.sqlite_err())? {
        for (i, p) in profiles.iter_mut().enumerate() {
            p.record(row.get_ref(i).map_err(at.sqlite_err())?);
        }
        tally.add(1, 0);
    }
    Ok(profiles)
}

/// What the Parquet file records about its source: the table's real name and CREATE
/// statement, each column's declared type, and the encodings import needs to know.
fn parquet_metadata(table: &str, create_sql: String, columns: &[SqliteColumn]) -> Vec<KeyValue> {
    let mut kv = vec![
        KeyValue::new("dbguard.format".to_string(), "1".to_string()),
        KeyValue::new("dbguard.source".to_string(), "sqlite".to_string()),
        KeyValue::new(META_TABLE.to_string(), table.to_string()),
        KeyValue::new(META_SQLITE_SQL.to_string(), create_sql),
    ];
    for c in columns {
        kv.push(KeyValue::new(
            format!("{META_SQLITE_DECLTYPE_PREFIX}{}", c.name),
            c.decltype.clone(),
        ));
        if let Some(enc) = c.plan.encoding() {
            kv.push(KeyValue::new(
                format!("{META_ENCODING_PREFIX}{}", c.name),
                enc.to_string(),
            ));
        }
    }
    kv
}

/// Pass 2: streams the rows of `select` into record batches of `opts.batch_rows` and
/// JSON lines; returns the number of rows.
#[allow(clippy::too_many_arguments)] // one call site; a struct would only rename them
fn write_rows(
    conn: &Connection,
    at: TableInImage<'_>,
    select: &str,
    columns: &[SqliteColumn],
    schema: SchemaRef,
    sinks: &mut TableSinks,
    opts: &ExportOptions,
    tally: &Tally<'_>,
) -> Result<u64, ExportError> {
    let batch_rows = opts.batch_rows.max(1);
    let mut batch = BatchBuilder::new(schema, columns.iter().map(|c| c.plan));
    let mut stmt = conn.prepare(select).map_err(at.sqlite_err())?;
    let mut rows = stmt.query([]).map_err(at.sqlite_err())?;
    let mut rows_done: u64 = 0;
    while let Some(row) = rows.next().map_err(at.sqlite_err())? {
        sinks.write_jsonl(|w, keys| write_sqlite_row(w, keys, row))?;
        if sinks.wants_parquet() {
            for (i, column) in columns.iter().enumerate() {
                let v = row.get_ref(i).map_err(at.sqlite_err())?;
                batch.append(i, v).map_err(|class| {
                    at.changed(format!(
                        "column {:?} holds {class}, not seen when profiling",
                        column.name
                    ))
                })?;
            }
            if batch.end_row() == batch_rows {
                sinks.write_batch(&batch.take_batch().map_err(at.arrow_err())?)?;
            }
        }
        rows_done += 1;
        tally.add(1, 1);
    }
    if !batch.is_empty() {
        sinks.write_batch(&batch.take_batch().map_err(at.arrow_err())?)?;
    }
    Ok(rows_done)
}
