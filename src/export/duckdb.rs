//! Exporting the tables of a DuckDB image through DuckDB's Arrow interface; columns whose
//! type Parquet cannot hold are written as text.

use std::collections::HashMap;
use std::fs;
use std::path::Path;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, StringBuilder};
use arrow::datatypes::{DataType, Field, IntervalUnit, Schema, SchemaRef};
use arrow::error::ArrowError;
use arrow::record_batch::RecordBatch;
use arrow::util::display::{ArrayFormatter, FormatOptions};
use duckdb::Connection;
use parquet::file::metadata::KeyValue;

use super::json::write_batch_jsonl;
use super::sinks::{TableSinks, with_sinks};
use super::{
    ExportError, ExportOptions, ExportReport, META_DUCKDB_SQL, META_DUCKDB_TYPE_PREFIX,
    META_ENCODING_PREFIX, META_NOT_NULL, META_PRIMARY_KEY, META_TABLE, TableExport, TableInImage,
    Tally, io_err, select_tables,
};
use crate::db::quote_ident;

/// A table's schema and name inside the database.
type QualifiedName = (String, String);

pub(super) fn export(
    image: &Path,
    dest_dir: &Path,
    opts: &ExportOptions,
    tally: &Tally<'_>,
) -> Result<ExportReport, ExportError> {
    let conn = open_image(image)?;
    let entries = list_tables(&conn, image)?;
    // Users name tables outside schema `main` as `schema.table`.
    let display = |(s, t): &QualifiedName| {
        if s == "main" {
            t.clone()
        } else {
            format!("{s}.{t}")
        }
    };
    let names: Vec<String> = entries.iter().map(display).collect();
    let by_name: HashMap<String, QualifiedName> =
        names.iter().cloned().zip(entries.iter().cloned()).collect();
    let (tables, skipped) = select_tables(image, &names, &[], opts)?;
    let mut report = ExportReport {
        tables: Vec::new(),
        skipped,
    };
    for name in tables {
        let Some(qualified) = by_name.get(&name) else {
            continue;
        };
        let at = TableInImage {
            image,
            table: &name,
        };
        report
            .tables
            .push(export_table(&conn, at, qualified, dest_dir, opts, tally)?);
    }
    Ok(report)
}

fn open_image(image: &Path) -> Result<Connection, ExportError> {
    let open_err = |source| ExportError::OpenDuckDb {
        path: image.to_path_buf(),
        source,
    };
    fs::metadata(image).map_err(io_err(image))?;
    let config = duckdb::Config::default()
        .access_mode(duckdb::AccessMode::ReadOnly)
        .and_then(|c| c.enable_autoload_extension(false))
        .map_err(open_err)?;
    Connection::open_with_flags(image, config).map_err(open_err)
}

/// The user tables, those of schema `main` first.
fn list_tables(conn: &Connection, image: &Path) -> Result<Vec<QualifiedName>, ExportError> {
    let list_err = TableInImage {
        image,
        table: "(catalog)",
    }
    .duckdb_err();
    let mut stmt = conn
        .prepare(
            "SELECT schema_name, table_name FROM duckdb_tables() \
             WHERE database_name = current_database() AND NOT internal AND NOT temporary \
             ORDER BY schema_name <> 'main', schema_name, table_name",
        )
        .map_err(&list_err)?;
    let rows = stmt
        .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))
        .map_err(&list_err)?;
    rows.collect::<Result<_, _>>().map_err(&list_err)
}

fn export_table(
    conn: &Connection,
    at: TableInImage<'_>,
    (schema_name, table): &QualifiedName,
    dest_dir: &Path,
    opts: &ExportOptions,
    tally: &Tally<'_>,
) -> Result<TableExport, ExportError> {
    // Before the stream: DuckDB runs one query at a time on a connection.
    let shape = table_shape(conn, at, schema_name, table)?;
    let sql = format!(
        "SELECT * FROM {}.{}",
        quote_ident(schema_name),
        quote_ident(table)
    );
    let mut stmt = conn.prepare(&sql).map_err(at.duckdb_err())?;
    let stream = stmt.stream_arrow([]).map_err(at.duckdb_err())?;
    let source_schema = stream.get_schema();
    let as_text: Vec<bool> = source_schema
        .fields()
        .iter()
        .map(|f| !parquet_can_store(f.data_type()))
        .collect();
    let out_schema = output_schema(&source_schema, &as_text);
    let mut kv = parquet_metadata(at.table, &source_schema, &as_text);
    kv.extend(shape.metadata());
    let sinks = TableSinks::open(dest_dir, at.table, &out_schema, kv, opts)?;
    let mut rows_done = 0u64;
    let files = with_sinks(sinks, |sinks| {
        for batch in stream {
            let batch = batch.map_err(at.duckdb_err())?;
            let out = parquet_batch(&batch, &as_text, &out_schema).map_err(at.arrow_err())?;
            sinks.write_batch(&out)?;
            // Use the original columns for JSON: nested types become arrays/objects.
            sinks.write_jsonl(|w, keys| write_batch_jsonl(w, keys, batch.columns()))?;
            rows_done += batch.num_rows() as u64;
            tally.add(batch.num_rows() as u64, batch.num_rows() as u64);
        }
        Ok(())
    })?;
    Ok(TableExport {
        table: at.table.to_string(),
        rows: rows_done,
        files,
    })
}

/// What a DuckDB table's catalog says about its shape, recorded so that an import can
/// keep the primary key and NOT NULL columns.
struct TableShape {
    sql: String,
    /// (name, DuckDB type, nullable), in column order.
    columns: Vec<(String, String, bool)>,
    primary_key: Vec<String>,
}

impl TableShape {
    fn metadata(&self) -> Vec<KeyValue> {
        let json = |names: Vec<&String>| serde_json::to_string(&names).unwrap_or_default();
        let mut kv = vec![KeyValue::new(META_DUCKDB_SQL.to_string(), self.sql.clone())];
        for (name, ty, _) in &self.columns {
            kv.push(KeyValue::new(
                format!("{META_DUCKDB_TYPE_PREFIX}{name}"),
                ty.clone(),
            ));
        }
        let not_null = self
            .columns
            .iter()
            .filter(|(_, _, nullable)| !nullable)
            .map(|(name, _, _)| name)
            .collect();
        kv.push(KeyValue::new(META_NOT_NULL.to_string(), json(not_null)));
        if !self.primary_key.is_empty() {
            kv.push(KeyValue::new(
                META_PRIMARY_KEY.to_string(),
                json(self.primary_key.iter().collect()),
            ));
        }
        kv
    }
}

/// The table's CREATE statement, column types and nullability, and primary key columns.
fn table_shape(
    conn: &Connection,
    at: TableInImage<'_>,
    schema_name: &str,
    table: &str,
) -> Result<TableShape, ExportError> {
    let err = at.duckdb_err();
    let sql: String = conn
        .query_row(
            "SELECT coalesce(sql, '') FROM duckdb_tables() \
             WHERE database_name = current_database() AND schema_name = ?1 AND table_name = ?2",
            [schema_name, table],
            |r| r.get(0),
        )
        .map_err(&err)?;
    let mut stmt = conn
        .prepare(
            "SELECT column_name, data_type, is_nullable FROM duckdb_columns() \
             WHERE database_name = current_database() AND schema_name = ?1 AND table_name = ?2 \
             ORDER BY column_index",
        )
        .map_err(&err)?;
    let columns = stmt
        .query_map([schema_name, table], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get::<_, bool>(2)?))
        })
        .map_err(&err)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(&err)?;
    // unnest keeps the key's column order.
    let mut stmt = conn
        .prepare(
            "SELECT unnest(constraint_column_names) FROM duckdb_constraints() \
             WHERE database_name = current_database() AND schema_name = ?1 AND table_name = ?2 \
             AND constraint_type = 'PRIMARY KEY'",
        )
        .map_err(&err)?;
    let primary_key = stmt
        .query_map([schema_name, table], |r| r.get(0))
        .map_err(&err)?
        .collect::<Result<Vec<String>, _>>()
        .map_err(&err)?;
    Ok(TableShape {
        sql,
        columns,
        primary_key,
    })
}

/// The source schema with the columns marked in `as_text` turned into nullable text.
fn output_schema(source: &SchemaRef, as_text: &[bool]) -> SchemaRef {
    Arc::new(Schema::new(
        source
            .fields()
            .iter()
            .zip(as_text)
            .map(|(f, &text)| {
                if text {
                    Field::new(f.name().clone(), DataType::Utf8, true)
                } else {
                    f.as_ref().clone()
                }
            })
            .collect::<Vec<_>>(),
    ))
}

/// The table's real name and, for each column written as text, the type it had.
fn parquet_metadata(name: &str, source: &SchemaRef, as_text: &[bool]) -> Vec<KeyValue> {
    let mut kv = vec![
        KeyValue::new("dbguard.format".to_string(), "1".to_string()),
        KeyValue::new("dbguard.source".to_string(), "duckdb".to_string()),
        KeyValue::new(META_TABLE.to_string(), name.to_string()),
    ];
    for (f, &text) in source.fields().iter().zip(as_text) {
        if text {
            kv.push(KeyValue::new(
                format!("{META_ENCODING_PREFIX}{}", f.name()),
                format!(
                    "text: DuckDB value of Arrow type {} rendered as text",
                    f.data_type()
                ),
            ));
        }
    }
    kv
}

/// `batch` as Parquet gets it: the columns marked in `as_text` rendered as text.
fn parquet_batch(
    batch: &RecordBatch,
    as_text: &[bool],
    out_schema: &SchemaRef,
) -> Result<RecordBatch, ArrowError> {
    let columns = batch
        .columns()
        .iter()
        .zip(as_text)
        .map(|(c, &text)| {
            if text {
                to_text_array(c)
            } else {
                Ok(c.clone())
            }
        })
        .collect::<Result<Vec<_>, _>>()?;
    RecordBatch::try_new(out_schema.clone(), columns)
}

/// Whether Parquet can store this type (the Parquet writer rejects or panics on the rest).
fn parquet_can_store(dt: &DataType) -> bool {
    match dt {
        DataType::Union(_, _) | DataType::Interval(IntervalUnit::MonthDayNano) => false,
        DataType::List(f)
        | DataType::LargeList(f)
        | DataType::ListView(f)
        | DataType::LargeListView(f)
        | DataType::FixedSizeList(f, _)
        | DataType::Map(f, _) => parquet_can_store(f.data_type()),
        DataType::Struct(fields) => fields.iter().all(|f| parquet_can_store(f.data_type())),
        DataType::Dictionary(_, v) => parquet_can_store(v),
        DataType::RunEndEncoded(_, v) => parquet_can_store(v.data_type()),
        _ => true,
    }
}

fn to_text_array(array: &dyn Array) -> Result<ArrayRef, ArrowError> {
    let opts = FormatOptions::default();
    let fmt = ArrayFormatter::try_new(array, &opts)?;
    let mut b = StringBuilder::with_capacity(array.len(), array.len() * 8);
    for i in 0..array.len() {
        if array.is_null(i) {
            b.append_null();
        } else {
            b.append_value(fmt.value(i).to_string());
        }
    }
    Ok(Arc::new(b.finish()))
}
