//! Parquet files into a table: the schema and metadata the export recorded decide the
//! table's shape; values arrive as Arrow arrays.

use super::*;

pub(super) fn import_parquet(file: &Path, target: Destination<'_>) -> Result<u64, ImportError> {
    let pq_err = |source| ImportError::Parquet {
        path: file.to_path_buf(),
        table: target.table.to_string(),
        source,
    };
    let f = File::open(file).map_err(io_err(file))?;
    let builder = ParquetRecordBatchReaderBuilder::try_new(f).map_err(pq_err)?;
    let kv = key_value_metadata(builder.metadata());
    let (columns, numeric) = parquet_columns(builder.schema(), &kv);
    let mut table = target.prepare(&columns, &Shape::from_metadata(&kv))?;
    let reader = builder.with_batch_size(8192).build().map_err(pq_err)?;
    let mut rows = 0u64;
    let mut vals = Vec::with_capacity(columns.len());
    for batch in reader {
        let batch = batch.map_err(|source| ImportError::Arrow {
            path: file.to_path_buf(),
            table: target.table.to_string(),
            source,
        })?;
        for row in 0..batch.num_rows() {
            vals.clear();
            for (i, col) in batch.columns().iter().enumerate() {
                if !table.inserts(i) {
                    continue;
                }
                let numeric_float = numeric.get(i).copied().unwrap_or(false);
                let v = arrow_to_sql(col.as_ref(), row, numeric_float).map_err(|reason| {
                    ImportError::Malformed {
                        path: file.to_path_buf(),
                        line: rows + 1,
                        reason,
                    }
                })?;
                vals.push(v);
            }
            table.insert(&vals)?;
            rows += 1;
        }
    }
    Ok(rows)
}

/// The key-value metadata of a Parquet file; keys without a value are left out.
pub(crate) fn key_value_metadata(metadata: &ParquetMetaData) -> HashMap<String, String> {
    metadata
        .file_metadata()
        .key_value_metadata()
        .map(|kvs| {
            kvs.iter()
                .filter_map(|k| Some((k.key.clone(), k.value.clone()?)))
                .collect()
        })
        .unwrap_or_default()
}

/// Each column's name and declared type (the source's, recorded by the export, or one
/// that suits its Arrow type), and whether it holds [`ENCODING_NUMERIC_FLOAT`] values.
/// A recorded type is checked where it would be used: [`Destination::create`].
pub(super) fn parquet_columns(
    schema: &Schema,
    kv: &HashMap<String, String>,
) -> (Vec<(String, String)>, Vec<bool>) {
    let columns = schema
        .fields()
        .iter()
        .map(|f| {
            let decl = kv
                .get(&format!("{META_SQLITE_DECLTYPE_PREFIX}{}", f.name()))
                .cloned()
                .unwrap_or_else(|| default_decltype(f.data_type()).to_string());
            (f.name().clone(), decl)
        })
        .collect();
    let numeric = schema
        .fields()
        .iter()
        .map(|f| {
            kv.get(&format!("{META_ENCODING_PREFIX}{}", f.name()))
                .is_some_and(|e| e == ENCODING_NUMERIC_FLOAT)
        })
        .collect();
    (columns, numeric)
}

/// SQLite's `type-name`: words (`UNSIGNED BIG INT`, `VARCHAR`) and at most one
/// parenthesised pair of numbers (`DECIMAL(10, 5)`), or nothing at all.
pub(super) fn is_type_name(text: &str) -> bool {
    let (words, size) = match text.split_once('(') {
        Some((words, rest)) => match rest.strip_suffix(')') {
            Some(size) => (words, Some(size)),
            None => return false,
        },
        None => (text, None),
    };
    let word_ok = |w: &str| {
        w.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
            && w.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
    };
    let mut word_list = words.split(' ').filter(|w| !w.is_empty()).peekable();
    let some_words = word_list.peek().is_some();
    let words_ok = word_list.all(word_ok) && (some_words || text.is_empty());
    let number_ok = |n: &str| {
        let n = n.trim();
        let n = n.strip_prefix(['+', '-']).unwrap_or(n);
        !n.is_empty()
            && n.chars().all(|c| c.is_ascii_digit() || c == '.')
            && n.chars().filter(|&c| c == '.').count() <= 1
    };
    let size_ok = size.is_none_or(|size| {
        let numbers: Vec<&str> = size.split(',').collect();
        numbers.len() <= 2 && numbers.into_iter().all(number_ok)
    });
    words_ok && size_ok
}

pub(super) fn default_decltype(dt: &DataType) -> &'static str {
    match dt {
        DataType::Boolean
        | DataType::Int8
        | DataType::Int16
        | DataType::Int32
        | DataType::Int64
        | DataType::UInt8
        | DataType::UInt16
        | DataType::UInt32
        | DataType::UInt64 => "INTEGER",
        DataType::Float16 | DataType::Float32 | DataType::Float64 => "REAL",
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => "TEXT",
        DataType::Binary
        | DataType::LargeBinary
        | DataType::BinaryView
        | DataType::FixedSizeBinary(_) => "BLOB",
        _ => "",
    }
}
