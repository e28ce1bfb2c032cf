//! Round trips: export SQLite and DuckDB images, read the files back as Parquet and JSON
//! readers would, and load them again with [`crate::import`].

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

use arrow::array::AsArray;
use arrow::datatypes::{DataType, Float64Type, Int64Type};
use arrow::record_batch::RecordBatch;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::file::reader::{FileReader, SerializedFileReader};
use rusqlite::Connection;
use rusqlite::types::ValueRef;
use tempfile::TempDir;

use super::naming::{jsonl_extension, table_name_from_stem};
use super::*;
use crate::import::{
    ImportError, SqlVal, arrow_to_sql, import_table, json_to_sql, key_value_metadata,
};

fn sqlite_file(dir: &Path, name: &str, sql: &str) -> PathBuf {
    let path = dir.join(name);
    let conn = Connection::open(&path).expect("open");
    conn.execute_batch(sql).expect("setup sql");
    path
}

fn dump(conn: &Connection, sql: &str) -> Vec<Vec<SqlVal>> {
    let mut stmt = conn.prepare(sql).expect("prepare");
    let n = stmt.column_count();
    let mut rows = stmt.query([]).expect("query");
    let mut out = Vec::new();
    while let Some(row) = rows.next().expect("row") {
        out.push(
            (0..n)
                .map(|i| match row.get_ref(i).expect("get") {
                    ValueRef::Null => SqlVal::Null,
                    ValueRef::Integer(v) => SqlVal::Int(v),
                    ValueRef::Real(v) => SqlVal::Real(v),
                    ValueRef::Text(v) => SqlVal::Text(v.to_vec()),
                    ValueRef::Blob(v) => SqlVal::Blob(v.to_vec()),
                })
                .collect(),
        );
    }
    out
}

fn read_parquet(path: &Path) -> (Vec<RecordBatch>, HashMap<String, String>, usize) {
    let reader = SerializedFileReader::new(File::open(path).expect("open")).expect("parquet");
    let row_groups = reader.metadata().num_row_groups();
    let builder =
        ParquetRecordBatchReaderBuilder::try_new(File::open(path).expect("open")).expect("pq");
    let kv = key_value_metadata(builder.metadata());
    let batches = builder
        .build()
        .expect("reader")
        .collect::<Result<Vec<_>, _>>()
        .expect("batches");
    (batches, kv, row_groups)
}

/// Each exported table's name and row count, in export order.
fn names_and_rows(report: &ExportReport) -> Vec<(&str, u64)> {
    report
        .tables
        .iter()
        .map(|t| (t.table.as_str(), t.rows))
        .collect()
}

fn read_jsonl(path: &Path) -> Vec<serde_json::Value> {
    let f = File::open(path).expect("open");
    let r: Box<dyn Read> = match path.extension().and_then(|e| e.to_str()) {
        Some("gz") => Box::new(flate2::read::MultiGzDecoder::new(f)),
        Some("zst") => Box::new(zstd::Decoder::new(f).expect("zstd")),
        _ => Box::new(f),
    };
    BufReader::new(r)
        .lines()
        .map(|l| serde_json::from_str(&l.expect("line")).expect("json"))
        .collect()
}

const MIXED_SETUP: &str = "
    CREATE TABLE t (id INTEGER PRIMARY KEY, c, i INTEGER, r REAL, s TEXT, b BLOB, n, num NUMERIC);
    INSERT INTO t (c, i, r, s, b, num) VALUES
        (42, 1, 0.5, 'a', x'00', 1),
        ('hello', 2, 1e300, 'ü', x'ff', 2.5),
        (1.5, NULL, NULL, NULL, NULL, NULL),
        (x'00ff10', 9223372036854775807, -2.25, '', x'', 7),
        (NULL, -9223372036854775808, 9e999, 'x\"y', x'0102', -3),
        (CAST(x'ff00fe' AS TEXT), 0, -9e999, 'z', NULL, 0.125),
        (9223372036854775807, 3, 0.1, 'q', x'aa', 9007199254740992),
        (0.1, 4, 1.0, 'w', x'bb', 4),
        (-0.0, 5, 2.0, 'e', x'cc', 5);
";

/// The expected mixed-column values, in row order.
fn expected_c() -> Vec<SqlVal> {
    vec![
        SqlVal::Int(42),
        SqlVal::Text(b"hello".to_vec()),
        SqlVal::Real(1.5),
        SqlVal::Blob(vec![0x00, 0xff, 0x10]),
        SqlVal::Null,
        SqlVal::Text(vec![0xff, 0x00, 0xfe]),
        SqlVal::Int(i64::MAX),
        SqlVal::Real(0.1),
        SqlVal::Real(-0.0),
    ]
}

#[test]
fn mixed_column_round_trips_in_every_format_and_codec() {
    let tmp = TempDir::new().expect("tempdir");
    let image = sqlite_file(tmp.path(), "src.db", MIXED_SETUP);
    let src = Connection::open(&image).expect("open");
    let all_cols = "SELECT typeof(c), c, typeof(i), i, typeof(r), r, typeof(s), s, \
                    typeof(b), b, typeof(n), n, typeof(num), num FROM t ORDER BY id";
    let source_rows = dump(&src, all_cols);
    assert_eq!(
        dump(&src, "SELECT c FROM t ORDER BY id")
            .into_iter()
            .map(|mut r| r.remove(0))
            .collect::<Vec<_>>(),
        expected_c()
    );

    for (ci, compression) in [Compression::Zstd, Compression::Gzip, Compression::None]
        .into_iter()
        .enumerate()
    {
        let out = tmp.path().join(format!("out{ci}"));
        let opts = ExportOptions {
            compression,
            ..ExportOptions::default()
        };
        let report = export_image(DbKind::Sqlite, &image, &out, &opts, &|_| {}).expect("export");
        assert!(report.skipped.is_empty());
        assert_eq!(report.tables.len(), 1);
        let t = &report.tables[0];
        assert_eq!((t.table.as_str(), t.rows), ("t", 9));
        assert_eq!(t.files.len(), 2);
        let pq = out.join("parquet/t.parquet");
        let jl = out.join(format!("jsonl/t.{}", jsonl_extension(compression)));
        assert_eq!(t.files, vec![pq.clone(), jl.clone()]);

        // Parquet: types per the profile, values exact.
        let (batches, kv, _) = read_parquet(&pq);
        assert_eq!(kv.get(META_TABLE).map(String::as_str), Some("t"));
        assert_eq!(
            kv.get("dbguard.encoding.c").map(String::as_str),
            Some(ENCODING_SQLITE_VALUE)
        );
        assert_eq!(
            kv.get("dbguard.encoding.num").map(String::as_str),
            Some(ENCODING_NUMERIC_FLOAT)
        );
        assert_eq!(
            kv.get("dbguard.encoding.n").map(String::as_str),
            Some(ENCODING_ALL_NULL)
        );
        let batch = arrow::compute::concat_batches(&batches[0].schema(), &batches).expect("concat");
        let schema = batch.schema();
        let types: Vec<&DataType> = schema.fields().iter().map(|f| f.data_type()).collect();
        assert_eq!(types[0], &DataType::Int64); // id
        assert!(matches!(types[1], DataType::Struct(f) if is_mixed_struct(f)));
        assert_eq!(types[2], &DataType::Int64);
        assert_eq!(types[3], &DataType::Float64);
        assert_eq!(types[4], &DataType::Utf8);
        assert_eq!(types[5], &DataType::Binary);
        assert_eq!(types[6], &DataType::Utf8);
        assert_eq!(types[7], &DataType::Float64);
        let c: Vec<SqlVal> = (0..batch.num_rows())
            .map(|r| arrow_to_sql(batch.column(1).as_ref(), r, false).expect("decode"))
            .collect();
        assert_eq!(c, expected_c());
        let i = batch.column(2).as_primitive::<Int64Type>();
        assert_eq!(i.value(3), i64::MAX);
        assert_eq!(i.value(4), i64::MIN);
        let r = batch.column(3).as_primitive::<Float64Type>();
        assert_eq!(r.value(4), f64::INFINITY);
        assert_eq!(r.value(5), f64::NEG_INFINITY);

        // JSONL: documented encoding.
        let lines = read_jsonl(&jl);
        assert_eq!(lines.len(), 9);
        let cs: Vec<&serde_json::Value> = lines.iter().map(|l| &l["c"]).collect();
        assert_eq!(cs[0], &serde_json::json!(42));
        assert_eq!(cs[1], &serde_json::json!("hello"));
        assert_eq!(cs[2], &serde_json::json!(1.5));
        assert_eq!(cs[3], &serde_json::json!({"$blob_b64": "AP8Q"}));
        assert_eq!(cs[4], &serde_json::Value::Null);
        assert_eq!(cs[5], &serde_json::json!({"$text_b64": "/wD+"}));
        assert_eq!(cs[6].as_i64(), Some(i64::MAX));
        assert_eq!(lines[4]["r"], serde_json::json!({"$real": "inf"}));
        assert_eq!(lines[5]["r"], serde_json::json!({"$real": "-inf"}));
        assert_eq!(lines[4]["i"].as_i64(), Some(i64::MIN));
        let decoded: Vec<SqlVal> = cs
            .iter()
            .map(|v| json_to_sql((*v).clone()).expect("decode"))
            .collect();
        assert_eq!(decoded, expected_c());

        // Import each file into a fresh database: identical storage classes and values.
        for (fi, file) in [&pq, &jl].into_iter().enumerate() {
            let target = tmp.path().join(format!("import{ci}_{fi}.db"));
            let n = import_table(DbKind::Sqlite, file, &target, "t", false).expect("import");
            assert_eq!(n, 9);
            let dst = Connection::open(&target).expect("open");
            assert_eq!(dump(&dst, all_cols), source_rows, "{}", file.display());
            // Again with replace: still 9 rows, not 18; without: appended.
            assert_eq!(
                import_table(DbKind::Sqlite, file, &target, "t", true).expect("replace"),
                9
            );
            assert_eq!(
                dump(&dst, "SELECT count(*) FROM t"),
                vec![vec![SqlVal::Int(9)]]
            );
        }
    }
}

#[test]
fn large_table_is_streamed_in_batches() {
    let tmp = TempDir::new().expect("tempdir");
    let image = sqlite_file(
        tmp.path(),
        "big.db",
        "CREATE TABLE big (id INTEGER PRIMARY KEY, v TEXT, w REAL);
         WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 200000)
         INSERT INTO big SELECT i, 'row ' || i, i / 7.0 FROM n;",
    );
    let out = tmp.path().join("out");
    let opts = ExportOptions {
        compression: Compression::None,
        batch_rows: 50_000,
        ..ExportOptions::default()
    };
    let report = export_image(DbKind::Sqlite, &image, &out, &opts, &|_| {}).expect("export");
    assert_eq!(report.tables[0].rows, 200_000);
    let (batches, _, row_groups) = read_parquet(&out.join("parquet/big.parquet"));
    assert_eq!(row_groups, 4);
    assert_eq!(
        batches.iter().map(RecordBatch::num_rows).sum::<usize>(),
        200_000
    );
    let jl = BufReader::new(File::open(out.join("jsonl/big.jsonl")).expect("open"));
    assert_eq!(jl.lines().count(), 200_000);

    let target = tmp.path().join("back.db");
    let n = import_table(
        DbKind::Sqlite,
        &out.join("parquet/big.parquet"),
        &target,
        "big",
        false,
    )
    .expect("import");
    assert_eq!(n, 200_000);
}

#[test]
fn odd_names_empty_tables_virtual_tables_and_filters() {
    let tmp = TempDir::new().expect("tempdir");
    let image = sqlite_file(
        tmp.path(),
        "odd.db",
        r#"CREATE TABLE "my ""odd"" table" (x);
           INSERT INTO "my ""odd"" table" VALUES (1), ('two');
           CREATE TABLE "ünï/cødé.t" (k TEXT PRIMARY KEY, v) WITHOUT ROWID;
           INSERT INTO "ünï/cødé.t" VALUES ('a', 1), ('b', x'00');
           CREATE TABLE empty (a INTEGER, b TEXT);
           CREATE TABLE "" (z);
           INSERT INTO "" VALUES (3);
           CREATE TABLE gen (a INTEGER, b INTEGER GENERATED ALWAYS AS (a * 2) STORED);
           INSERT INTO gen (a) VALUES (21);
           CREATE VIRTUAL TABLE docs USING fts5(body);
           INSERT INTO docs VALUES ('hello world');
           CREATE TABLE seq (id INTEGER PRIMARY KEY AUTOINCREMENT, v);
           INSERT INTO seq (v) VALUES (1);"#,
    );
    let out = tmp.path().join("out");
    let report = export_image(
        DbKind::Sqlite,
        &image,
        &out,
        &ExportOptions::default(),
        &|_| {},
    )
    .expect("export");
    let names = names_and_rows(&report);
    assert_eq!(
        names,
        vec![
            ("my \"odd\" table", 2),
            ("ünï/cødé.t", 2),
            ("empty", 0),
            ("", 1),
            ("gen", 1),
            ("seq", 1)
        ]
    );
    assert!(
        report
            .skipped
            .iter()
            .any(|s| s.table == "docs" && s.reason.starts_with("virtual table"))
    );
    assert!(report.skipped.iter().any(|s| s.table == "docs_data"));
    for t in &report.tables {
        let pq = &t.files[0];
        let stem = pq
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_suffix(".parquet"))
            .expect("stem");
        assert!(!stem.contains('/') && !stem.starts_with('.'));
        assert_eq!(
            table_name_from_stem(stem).as_deref(),
            Some(t.table.as_str())
        );
        let (batches, kv, _) = read_parquet(pq);
        assert_eq!(kv.get(META_TABLE), Some(&t.table));
        assert_eq!(
            batches.iter().map(RecordBatch::num_rows).sum::<usize>() as u64,
            t.rows
        );
        assert_eq!(read_jsonl(&t.files[1]).len() as u64, t.rows);
    }
    // Empty table: Parquet keeps the schema, so import creates the table.
    let target = tmp.path().join("t.db");
    let empty = &report.tables[2].files[0];
    assert_eq!(
        import_table(DbKind::Sqlite, empty, &target, "empty", false).expect("import"),
        0
    );
    let dst = Connection::open(&target).expect("open");
    assert_eq!(
        dump(
            &dst,
            "SELECT group_concat(name || ':' || type) FROM pragma_table_info('empty')"
        ),
        vec![vec![SqlVal::Text(b"a:INTEGER,b:TEXT".to_vec())]]
    );
    // Generated columns in an existing target are computed, not inserted.
    dst.execute_batch("CREATE TABLE gen (a INTEGER, b INTEGER GENERATED ALWAYS AS (a * 2) STORED)")
        .expect("create");
    import_table(
        DbKind::Sqlite,
        &report.tables[4].files[1],
        &target,
        "gen",
        true,
    )
    .expect("import gen");
    assert_eq!(
        dump(&dst, "SELECT a, b FROM gen"),
        vec![vec![SqlVal::Int(21), SqlVal::Int(42)]]
    );
    // Odd name round trip through import.
    import_table(
        DbKind::Sqlite,
        &report.tables[1].files[0],
        &target,
        "ünï/cødé.t",
        false,
    )
    .expect("import odd");
    assert_eq!(
        dump(&dst, r#"SELECT k, v FROM "ünï/cødé.t" ORDER BY k"#),
        vec![
            vec![SqlVal::Text(b"a".to_vec()), SqlVal::Int(1)],
            vec![SqlVal::Text(b"b".to_vec()), SqlVal::Blob(vec![0])]
        ]
    );
    // An existing table lacking a column is an error naming it.
    dst.execute_batch("CREATE TABLE other (q)").expect("create");
    let err =
        import_table(DbKind::Sqlite, empty, &target, "other", false).expect_err("missing column");
    assert!(matches!(&err, ImportError::MissingColumn { column, .. } if column == "a"));

    // Filter: only the named tables (case-insensitive like SQLite), virtual ones skipped.
    let out2 = tmp.path().join("out2");
    let opts = ExportOptions {
        tables: vec!["EMPTY".to_string(), "docs".to_string()],
        formats: vec![ExportFormat::Jsonl],
        ..ExportOptions::default()
    };
    let report = export_image(DbKind::Sqlite, &image, &out2, &opts, &|_| {}).expect("filtered");
    assert_eq!(report.tables.len(), 1);
    assert_eq!(report.tables[0].table, "empty");
    assert_eq!(
        report.tables[0].files,
        vec![out2.join("jsonl/empty.jsonl.zst")]
    );
    assert_eq!(report.skipped.len(), 1);
    assert!(!out2.join("parquet").exists());

    let opts = ExportOptions {
        tables: vec!["empty".to_string(), "no such table".to_string()],
        ..ExportOptions::default()
    };
    let err = export_image(
        DbKind::Sqlite,
        &image,
        &tmp.path().join("out3"),
        &opts,
        &|_| {},
    )
    .expect_err("unknown table");
    assert!(matches!(&err, ExportError::UnknownTable { table, .. } if table == "no such table"));
    assert!(err.to_string().contains("no such table"));
}

#[test]
fn bad_inputs_are_errors_not_panics() {
    let tmp = TempDir::new().expect("tempdir");
    let junk = tmp.path().join("junk.db");
    fs::write(&junk, b"this is not a database at all, not even close.....").expect("write");
    let out = tmp.path().join("out");
    let opts = ExportOptions::default();
    assert!(export_image(DbKind::Sqlite, &junk, &out, &opts, &|_| {}).is_err());
    assert!(export_image(DbKind::DuckDb, &junk, &out, &opts, &|_| {}).is_err());
    let missing = tmp.path().join("missing.db");
    assert!(matches!(
        export_image(DbKind::Sqlite, &missing, &out, &opts, &|_| {}),
        Err(ExportError::Io { .. })
    ));
}

#[test]
fn duckdb_tables_export() {
    let tmp = TempDir::new().expect("tempdir");
    let image = tmp.path().join("d.duckdb");
    {
        let conn = ::duckdb::Connection::open(&image).expect("open duckdb");
        conn.execute_batch(
            "CREATE TABLE items (id INTEGER, name VARCHAR, price DOUBLE, ok BOOLEAN,
                 day DATE, ts TIMESTAMP, amount DECIMAL(10,2), raw BLOB, big HUGEINT,
                 span INTERVAL, tags VARCHAR[], big_u UBIGINT);
             INSERT INTO items SELECT i, 'item ' || i, i * 1.5, i % 2 = 0,
                 DATE '2024-01-01' + i::INTEGER, TIMESTAMP '2024-01-01 00:00:00' + INTERVAL (i) SECOND,
                 (i / 100.0)::DECIMAL(10,2), '\\xAA\\x00'::BLOB, i::HUGEINT * 1000000000000,
                 INTERVAL (i) MINUTE, ['a', 'b'], 18446744073709551615
             FROM range(5000) t(i);
             INSERT INTO items (id) VALUES (NULL);
             CREATE TABLE empty_t (a INTEGER);
             CREATE SCHEMA s2;
             CREATE TABLE s2.\"odd name\" (v VARCHAR);
             INSERT INTO s2.\"odd name\" VALUES ('x'), (NULL);
             CREATE VIEW v AS SELECT 1;",
        )
        .expect("setup");
    }
    let out = tmp.path().join("out");
    let opts = ExportOptions {
        batch_rows: 2048,
        ..ExportOptions::default()
    };
    let report = export_image(DbKind::DuckDb, &image, &out, &opts, &|_| {}).expect("export");
    let names = names_and_rows(&report);
    assert_eq!(
        names,
        vec![("empty_t", 0), ("items", 5001), ("s2.odd name", 2)]
    );
    let items = &report.tables[1];
    let (batches, kv, row_groups) = read_parquet(&items.files[0]);
    assert!(row_groups > 1, "{row_groups} row groups");
    assert_eq!(
        batches.iter().map(RecordBatch::num_rows).sum::<usize>(),
        5001
    );
    assert_eq!(kv.get(META_TABLE).map(String::as_str), Some("items"));
    // INTERVAL arrives as a nanosecond interval, which Parquet cannot hold: text.
    assert!(
        kv.get("dbguard.encoding.span")
            .is_some_and(|e| e.starts_with("text:")),
        "{kv:?}"
    );
    let schema = batches[0].schema();
    assert_eq!(schema.field(0).data_type(), &DataType::Int32);
    assert_eq!(schema.field(2).data_type(), &DataType::Float64);
    let lines = read_jsonl(&items.files[1]);
    assert_eq!(lines.len(), 5001);
    let l = &lines[3];
    assert_eq!(l["id"], serde_json::json!(3));
    assert_eq!(l["name"], serde_json::json!("item 3"));
    assert_eq!(l["price"], serde_json::json!(4.5));
    assert_eq!(l["ok"], serde_json::json!(false));
    assert_eq!(l["day"], serde_json::json!("2024-01-04"));
    assert_eq!(l["ts"], serde_json::json!("2024-01-01T00:00:03"));
    assert_eq!(l["amount"], serde_json::json!("0.03"));
    assert_eq!(l["raw"], serde_json::json!({"$blob_b64": "qgA="}));
    assert_eq!(l["big"], serde_json::json!("3000000000000"));
    assert_eq!(l["tags"], serde_json::json!(["a", "b"]));
    assert_eq!(l["big_u"].as_u64(), Some(u64::MAX));
    assert!(l["span"].is_string(), "{}", l["span"]);
    assert!(
        lines[5000]
            .as_object()
            .expect("obj")
            .values()
            .all(serde_json::Value::is_null)
    );

    // The Parquet export loads into SQLite.
    let target = tmp.path().join("t.db");
    assert_eq!(
        import_table(DbKind::Sqlite, &items.files[0], &target, "items", false).expect("import"),
        5001
    );
    assert_eq!(
        import_table(DbKind::Sqlite, &items.files[1], &target, "items2", false)
            .expect("import jsonl"),
        5001
    );

    let opts = ExportOptions {
        tables: vec!["s2.odd name".to_string()],
        ..ExportOptions::default()
    };
    let report = export_image(
        DbKind::DuckDb,
        &image,
        &tmp.path().join("o2"),
        &opts,
        &|_| {},
    )
    .expect("filtered");
    assert_eq!(report.tables.len(), 1);
    assert_eq!(report.tables[0].rows, 2);
    let opts = ExportOptions {
        tables: vec!["v".to_string()],
        ..ExportOptions::default()
    };
    assert!(matches!(
        export_image(
            DbKind::DuckDb,
            &image,
            &tmp.path().join("o3"),
            &opts,
            &|_| {}
        ),
        Err(ExportError::UnknownTable { .. })
    ));
}

/// `(name, declared type, notnull, pk)` of every column of `table`, and its CREATE statement.
fn table_shape(conn: &Connection, table: &str) -> (Vec<(String, String, i64, i64)>, String) {
    let mut stmt = conn
        .prepare("SELECT name, type, \"notnull\", pk FROM pragma_table_info(?1) ORDER BY cid")
        .expect("prepare");
    let columns = stmt
        .query_map([table], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
        })
        .expect("query")
        .collect::<Result<Vec<_>, _>>()
        .expect("columns");
    let sql = conn
        .query_row(
            "SELECT sql FROM sqlite_schema WHERE type = 'table' AND name = ?1",
            [table],
            |r| r.get(0),
        )
        .expect("sql");
    (columns, sql)
}

fn col(name: &str, ty: &str, notnull: i64, pk: i64) -> (String, String, i64, i64) {
    (name.to_string(), ty.to_string(), notnull, pk)
}

#[test]
fn sqlite_import_keeps_the_table_shape_and_refuses_duplicate_keys() {
    let tmp = TempDir::new().expect("tempdir");
    let image = sqlite_file(
        tmp.path(),
        "src.db",
        "CREATE TABLE mixed (id INTEGER PRIMARY KEY, v NOT NULL, b BLOB, t TEXT UNIQUE);
         INSERT INTO mixed VALUES (1, 42, x'00', 'a'), (2, 'x', NULL, 'b'), (3, 1.5, x'ff', NULL),
           (4, x'01', NULL, 'd'), (5, -1, x'', 'e'), (6, '', NULL, 'f');
         CREATE TABLE pair (a TEXT, b INTEGER, PRIMARY KEY (b, a)) WITHOUT ROWID;
         INSERT INTO pair VALUES ('x', 1), ('x', 2);",
    );
    let out = tmp.path().join("out");
    let opts = ExportOptions {
        formats: vec![ExportFormat::Parquet],
        ..ExportOptions::default()
    };
    export_image(DbKind::Sqlite, &image, &out, &opts, &|_| {}).expect("export");
    let src = Connection::open(&image).expect("open");
    let (source_columns, _) = table_shape(&src, "mixed");
    assert_eq!(
        source_columns,
        vec![
            col("id", "INTEGER", 0, 1),
            col("v", "", 1, 0),
            col("b", "BLOB", 0, 0),
            col("t", "TEXT", 0, 0)
        ]
    );
    let file = out.join("parquet/mixed.parquet");
    let target = tmp.path().join("target.db");
    assert_eq!(
        import_table(DbKind::Sqlite, &file, &target, "mixed", false).expect("import"),
        6
    );
    let dst = Connection::open(&target).expect("open");
    let (columns, sql) = table_shape(&dst, "mixed");
    assert_eq!(columns, source_columns);
    // The source's own statement, checked and (the name being the same) not renamed.
    assert_eq!(
        sql,
        "CREATE TABLE mixed (id INTEGER PRIMARY KEY, v NOT NULL, b BLOB, t TEXT UNIQUE)"
    );
    // Appending the same file again: refused on the first row, nothing loaded.
    let err = import_table(DbKind::Sqlite, &file, &target, "mixed", false).expect_err("dup");
    assert!(
        matches!(&err, ImportError::Duplicate { row: 1, key: "primary key", table, .. } if table == "mixed"),
        "{err:?}"
    );
    let message = err.to_string();
    assert!(
        message.contains("row 1 of") && message.contains("mixed.id"),
        "{message}"
    );
    assert_eq!(
        dump(&dst, "SELECT count(*), count(DISTINCT id) FROM mixed"),
        vec![vec![SqlVal::Int(6), SqlVal::Int(6)]]
    );
    // --replace loads the file again in place of the rows.
    assert_eq!(
        import_table(DbKind::Sqlite, &file, &target, "mixed", true).expect("replace"),
        6
    );
    assert_eq!(
        dump(&dst, "SELECT count(*) FROM mixed"),
        vec![vec![SqlVal::Int(6)]]
    );
    // Another name gets the same shape; a composite key WITHOUT ROWID survives too.
    import_table(DbKind::Sqlite, &file, &target, "copy of mixed", false).expect("copy");
    assert_eq!(table_shape(&dst, "copy of mixed").0, source_columns);
    let pair = out.join("parquet/pair.parquet");
    import_table(DbKind::Sqlite, &pair, &target, "pair", false).expect("pair");
    let (columns, sql) = table_shape(&dst, "pair");
    assert_eq!(
        columns,
        vec![col("a", "TEXT", 1, 2), col("b", "INTEGER", 1, 1)]
    );
    assert!(sql.ends_with("WITHOUT ROWID"), "{sql}");
    let err = import_table(DbKind::Sqlite, &pair, &target, "pair", false).expect_err("dup");
    assert!(
        matches!(err, ImportError::Duplicate { row: 1, .. }),
        "{err:?}"
    );
    // A UNIQUE column refuses too, naming the row that collided.
    dst.execute_batch("DELETE FROM mixed WHERE id <> 2; UPDATE mixed SET id = 20")
        .expect("edit");
    let err = import_table(DbKind::Sqlite, &file, &target, "mixed", false).expect_err("unique");
    assert!(
        matches!(&err, ImportError::Duplicate { row: 2, key: "unique key", detail, .. } if detail.contains("mixed.t")),
        "{err:?}"
    );
    assert_eq!(
        dump(&dst, "SELECT count(*) FROM mixed"),
        vec![vec![SqlVal::Int(1)]]
    );
}

#[test]
fn duckdb_import_keeps_the_primary_key_and_not_null_columns() {
    let tmp = TempDir::new().expect("tempdir");
    let image = tmp.path().join("d.duckdb");
    ::duckdb::Connection::open(&image)
        .expect("open duckdb")
        .execute_batch(
            "CREATE TABLE items (id INTEGER PRIMARY KEY, name VARCHAR NOT NULL, price DOUBLE);
             INSERT INTO items SELECT i, 'item ' || i, i * 1.5 FROM range(10) t(i);
             CREATE TABLE pairs (a VARCHAR, b BIGINT, PRIMARY KEY (b, a));
             INSERT INTO pairs VALUES ('x', 1), ('x', 2);",
        )
        .expect("setup");
    let out = tmp.path().join("out");
    let opts = ExportOptions {
        formats: vec![ExportFormat::Parquet],
        ..ExportOptions::default()
    };
    export_image(DbKind::DuckDb, &image, &out, &opts, &|_| {}).expect("export");
    let file = out.join("parquet/items.parquet");
    let (_, kv, _) = read_parquet(&file);
    assert_eq!(
        kv.get(META_PRIMARY_KEY).map(String::as_str),
        Some(r#"["id"]"#)
    );
    assert_eq!(
        kv.get(META_NOT_NULL).map(String::as_str),
        Some(r#"["id","name"]"#)
    );
    assert_eq!(
        kv.get("dbguard.duckdb.type.name").map(String::as_str),
        Some("VARCHAR")
    );
    assert!(
        kv.get(META_DUCKDB_SQL)
            .is_some_and(|sql| sql.starts_with("CREATE TABLE items")),
        "{kv:?}"
    );
    let target = tmp.path().join("t.db");
    assert_eq!(
        import_table(DbKind::Sqlite, &file, &target, "items", false).expect("import"),
        10
    );
    let dst = Connection::open(&target).expect("open");
    assert_eq!(
        table_shape(&dst, "items").0,
        vec![
            col("id", "INTEGER", 1, 1),
            col("name", "TEXT", 1, 0),
            col("price", "REAL", 0, 0)
        ]
    );
    let err = import_table(DbKind::Sqlite, &file, &target, "items", false).expect_err("dup");
    assert!(
        matches!(err, ImportError::Duplicate { row: 1, .. }),
        "{err:?}"
    );
    assert_eq!(
        dump(&dst, "SELECT count(*) FROM items"),
        vec![vec![SqlVal::Int(10)]]
    );
    let pairs = out.join("parquet/pairs.parquet");
    import_table(DbKind::Sqlite, &pairs, &target, "pairs", false).expect("pairs");
    assert_eq!(
        table_shape(&dst, "pairs").0,
        vec![col("a", "TEXT", 1, 2), col("b", "INTEGER", 1, 1)]
    );
}

#[test]
fn a_parquet_file_without_recorded_shape_imports_as_before() {
    // What files exported before dbguard recorded the table's shape look like: the
    // table name and declared types, no CREATE statement, no key.
    let tmp = TempDir::new().expect("tempdir");
    let file = tmp.path().join("old.parquet");
    let schema = std::sync::Arc::new(arrow::datatypes::Schema::new(vec![
        arrow::datatypes::Field::new("id", DataType::Int64, true),
        arrow::datatypes::Field::new("t", DataType::Utf8, true),
    ]));
    let batch = RecordBatch::try_new(
        schema.clone(),
        vec![
            std::sync::Arc::new(arrow::array::Int64Array::from(vec![1, 2, 3])),
            std::sync::Arc::new(arrow::array::StringArray::from(vec!["a", "b", "c"])),
        ],
    )
    .expect("batch");
    let props = parquet::file::properties::WriterProperties::builder()
        .set_key_value_metadata(Some(vec![
            parquet::file::metadata::KeyValue::new(META_TABLE.to_string(), "old".to_string()),
            parquet::file::metadata::KeyValue::new(
                format!("{META_SQLITE_DECLTYPE_PREFIX}id"),
                "INTEGER".to_string(),
            ),
        ]))
        .build();
    let mut writer = parquet::arrow::ArrowWriter::try_new(
        File::create(&file).expect("create"),
        schema,
        Some(props),
    )
    .expect("writer");
    writer.write(&batch).expect("write");
    writer.close().expect("close");
    let target = tmp.path().join("t.db");
    for _ in 0..2 {
        assert_eq!(
            import_table(DbKind::Sqlite, &file, &target, "old", false).expect("import"),
            3
        );
    }
    let dst = Connection::open(&target).expect("open");
    assert_eq!(
        table_shape(&dst, "old").0,
        vec![col("id", "INTEGER", 0, 0), col("t", "TEXT", 0, 0)]
    );
    // No key was recorded, so appending twice keeps both copies, as it always did.
    assert_eq!(
        dump(&dst, "SELECT count(*) FROM old"),
        vec![vec![SqlVal::Int(6)]]
    );
}

#[test]
fn progress_counts_rows_written_and_every_pass_read() {
    let tmp = TempDir::new().expect("tempdir");
    let image = sqlite_file(
        tmp.path(),
        "p.db",
        "CREATE TABLE a (x INTEGER);
         INSERT INTO a WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 10000) SELECT i FROM n;
         CREATE TABLE b (y TEXT);
         INSERT INTO b WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 5000) SELECT 'v' || i FROM n;",
    );
    for (formats, passes) in [
        (vec![ExportFormat::Parquet, ExportFormat::Jsonl], 2),
        (vec![ExportFormat::Jsonl], 1),
    ] {
        let opts = ExportOptions {
            formats,
            ..ExportOptions::default()
        };
        assert_eq!(row_passes(DbKind::Sqlite, &opts), passes);
        let seen = std::cell::RefCell::new(Vec::new());
        let out = tmp.path().join(format!("out{passes}"));
        let report = export_image(DbKind::Sqlite, &image, &out, &opts, &|p| {
            seen.borrow_mut().push(p)
        })
        .expect("export");
        assert_eq!(report.tables.iter().map(|t| t.rows).sum::<u64>(), 15000);
        let seen = seen.into_inner();
        assert!(seen.len() >= 3, "{seen:?}");
        for pair in seen.windows(2) {
            assert!(pair[0].work < pair[1].work && pair[0].rows <= pair[1].rows);
        }
        let last = seen.last().expect("reported");
        assert!(
            last.rows <= 15000 && last.work <= 15000 * passes,
            "{last:?}"
        );
        // Reported at least every Tally::EVERY rows: the last report is that close to the end.
        assert!(last.work + 4096 > 15000 * passes, "{last:?}");
        for p in &seen {
            // Rows are written in the last pass over a table only.
            assert!(p.rows <= p.work, "{p:?}");
        }
    }
    assert_eq!(row_passes(DbKind::DuckDb, &ExportOptions::default()), 1);
}
