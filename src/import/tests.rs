//! Unit tests of the import (round trips through export and import are tested in
//! `crate::export`'s tests).

use std::fs;

use rusqlite::Connection;
use tempfile::TempDir;

use super::*;

/// A three-row Parquet file with columns `a` (integer) and `b` (text) whose
/// key-value metadata is `kv`, written by the parquet crate as another tool would.
fn parquet_with_metadata(path: &Path, kv: &[(String, String)]) {
    use std::sync::Arc;
    let schema = Arc::new(Schema::new(vec![
        arrow::datatypes::Field::new("a", DataType::Int64, true),
        arrow::datatypes::Field::new("b", DataType::Utf8, true),
    ]));
    let batch = arrow::array::RecordBatch::try_new(
        schema.clone(),
        vec![
            Arc::new(arrow::array::Int64Array::from(vec![1, 2, 3])),
            Arc::new(arrow::array::StringArray::from(vec!["x", "y", "z"])),
        ],
    )
    .expect("batch");
    let kv = kv
        .iter()
        .map(|(k, v)| parquet::file::metadata::KeyValue::new(k.clone(), v.clone()))
        .collect();
    let props = parquet::file::properties::WriterProperties::builder()
        .set_key_value_metadata(Some(kv))
        .build();
    let mut writer = parquet::arrow::ArrowWriter::try_new(
        File::create(path).expect("create"),
        schema,
        Some(props),
    )
    .expect("writer");
    writer.write(&batch).expect("write");
    writer.close().expect("close");
}

/// Pieces of SQL an attacker would put in a table definition.
fn sql_piece() -> impl proptest::strategy::Strategy<Value = String> {
    use proptest::prelude::*;
    prop_oneof![
        Just("CREATE TABLE t (a INTEGER, b TEXT)".to_string()),
        Just("CREATE TABLE t".to_string()),
        Just("(a, b)".to_string()),
        Just("; DROP TABLE users".to_string()),
        Just("; ATTACH 'planted.db' AS p".to_string()),
        Just("; CREATE TABLE p.x(y)".to_string()),
        Just(" -- (".to_string()),
        Just("\n".to_string()),
        Just("/* (".to_string()),
        Just("*/".to_string()),
        Just("'".to_string()),
        Just("\"".to_string()),
        Just(" WITHOUT ROWID".to_string()),
        Just("CREATE TRIGGER x AFTER INSERT ON users BEGIN DELETE FROM users; END".to_string()),
        Just("CREATE TEMP TABLE t(a)".to_string()),
        Just("CREATE VIEW v AS SELECT * FROM users".to_string()),
        Just("PRAGMA writable_schema=1".to_string()),
        "[ -~]{0,12}",
    ]
}

proptest::proptest! {
    /// Whatever a Parquet file's metadata says (table definitions and declared types
    /// built from SQL fragments), an import leaves `users` alone, creates no file
    /// and no table but the one asked for, and ends in rows or an error.
    #[test]
    fn fuzz_parquet_metadata_runs_no_sql(
        sql in proptest::collection::vec(sql_piece(), 0..6),
        decltype in proptest::option::of(sql_piece()),
        with_sql in proptest::bool::ANY,
    ) {
        let tmp = TempDir::new().expect("tempdir");
        let target = tmp.path().join("t.db");
        Connection::open(&target)
            .and_then(|c| {
                c.execute_batch(
                    "CREATE TABLE users(id INTEGER PRIMARY KEY); INSERT INTO users VALUES (1), (2), (3);",
                )
            })
            .expect("users");
        let mut kv = Vec::new();
        if with_sql {
            kv.push((META_SQLITE_SQL.to_string(), sql.concat()));
        }
        if let Some(decltype) = decltype {
            kv.push((format!("{META_SQLITE_DECLTYPE_PREFIX}a"), decltype));
        }
        let file = tmp.path().join("f.parquet");
        parquet_with_metadata(&file, &kv);
        let imported = import_table(DbKind::Sqlite, &file, &target, "loaded", false);
        let conn = Connection::open(&target).expect("open");
        let users: i64 = conn
            .query_row("SELECT count(*) FROM users", [], |r| r.get(0))
            .expect("users survive");
        proptest::prop_assert_eq!(users, 3);
        let names: Vec<String> = conn
            .prepare("SELECT name FROM sqlite_schema WHERE name NOT LIKE 'sqlite_%' ORDER BY name")
            .and_then(|mut q| q.query_map([], |r| r.get(0))?.collect())
            .expect("schema");
        match imported {
            Ok(rows) => {
                proptest::prop_assert_eq!(rows, 3);
                proptest::prop_assert_eq!(names, vec!["loaded".to_string(), "users".to_string()]);
            }
            Err(_) => proptest::prop_assert_eq!(names, vec!["users".to_string()]),
        }
        let files: Vec<String> = fs::read_dir(tmp.path())
            .expect("list")
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        proptest::prop_assert!(!files.iter().any(|f| f.starts_with("planted")), "{:?}", files);
        proptest::prop_assert!(!Path::new("planted.db").exists());
    }

    /// A Parquet file with bytes flipped: rows or an error, never a panic.
    #[test]
    fn fuzz_damaged_parquet_files_are_errors(
        flips in proptest::collection::vec((proptest::prelude::any::<proptest::sample::Index>(), 1u8..), 1..6),
    ) {
        let tmp = TempDir::new().expect("tempdir");
        let file = tmp.path().join("f.parquet");
        parquet_with_metadata(&file, &[]);
        let mut bytes = fs::read(&file).expect("read");
        for (at, mask) in &flips {
            let at = at.index(bytes.len());
            bytes[at] ^= mask;
        }
        fs::write(&file, &bytes).expect("write");
        let _ = import_table(DbKind::Sqlite, &file, &tmp.path().join("t.db"), "t", false);
    }
}

#[test]
fn recorded_types_must_be_type_names() {
    for ok in [
        "",
        "INTEGER",
        "unsigned big int",
        "VARCHAR(255)",
        "DECIMAL(10, 5)",
        "NUMERIC(-1.5)",
    ] {
        assert!(is_type_name(ok), "{ok:?}");
    }
    for bad in [
        "INTEGER); DROP TABLE users; --",
        "TEXT, evil INTEGER",
        "INT -- (",
        "(1)",
        "TEXT(1",
        "TEXT(1, 2, 3)",
        "TEXT DEFAULT (x)",
        "1NT",
        "TEXT\nCHECK",
    ] {
        assert!(!is_type_name(bad), "{bad:?}");
    }
}

#[test]
fn constraints_are_added_for_columns_the_file_has() {
    let columns = [
        ("id".to_string(), "INTEGER".to_string()),
        ("name".to_string(), String::new()),
    ];
    assert_eq!(
        column_definitions(&columns, &["id".to_string()], &["name".to_string()]),
        "(\"id\" INTEGER, \"name\" NOT NULL, PRIMARY KEY (\"id\"))"
    );
    // A key naming a column the file lacks is left out rather than failing the import.
    assert_eq!(
        column_definitions(&columns, &["gone".to_string()], &[]),
        "(\"id\" INTEGER, \"name\")"
    );
}

#[test]
fn bad_inputs_are_errors_not_panics() {
    let tmp = TempDir::new().expect("tempdir");
    let target = tmp.path().join("t.db");
    let bad = tmp.path().join("bad.jsonl");
    fs::write(&bad, "{\"a\": 1}\nnot json\n").expect("write");
    let err = import_table(DbKind::Sqlite, &bad, &target, "x", false).expect_err("bad");
    assert!(matches!(err, ImportError::Malformed { line: 2, .. }));
    // Nothing committed.
    let dst = Connection::open(&target).expect("open");
    let tables: i64 = dst
        .query_row("SELECT count(*) FROM sqlite_schema", [], |r| r.get(0))
        .expect("count");
    assert_eq!(tables, 0);
    assert!(matches!(
        import_table(DbKind::DuckDb, &bad, &target, "x", false),
        Err(ImportError::Unsupported { .. })
    ));
}
