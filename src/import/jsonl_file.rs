//! JSON Lines files into a table: one object per line, in column order, each value with
//! the storage class the export gave it.

use super::*;

/// The objects of a JSON Lines file, one a line; blank lines are skipped.
pub(super) struct JsonlRows<'f, R> {
    file: &'f Path,
    reader: R,
    buf: Vec<u8>,
    /// The line the last row came from (1-based; 0 before the first).
    line: u64,
}

impl<'f, R: BufRead> JsonlRows<'f, R> {
    fn malformed(&self, line: u64, reason: String) -> ImportError {
        ImportError::Malformed {
            path: self.file.to_path_buf(),
            line,
            reason,
        }
    }

    fn next_row(&mut self) -> Result<Option<OrderedRow>, ImportError> {
        loop {
            self.buf.clear();
            let n = self
                .reader
                .read_until(b'\n', &mut self.buf)
                .map_err(io_err(self.file))?;
            if n == 0 {
                return Ok(None);
            }
            self.line += 1;
            if self.buf.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            return serde_json::from_slice::<OrderedRow>(&self.buf)
                .map(Some)
                .map_err(|e| self.malformed(self.line, e.to_string()));
        }
    }
}

/// Loads JSON lines; the first line's keys name the columns and every line must have
/// the same keys in the same order.
pub(super) fn import_jsonl<R: BufRead>(
    file: &Path,
    reader: R,
    target: Destination<'_>,
) -> Result<u64, ImportError> {
    let mut lines = JsonlRows {
        file,
        reader,
        buf: Vec::new(),
        line: 0,
    };
    let Some(first) = lines.next_row()? else {
        return Err(lines.malformed(
            0,
            format!(
                "empty file: no columns to load into table {:?}",
                target.table
            ),
        ));
    };
    let columns: Vec<(String, String)> = first
        .0
        .iter()
        .map(|(k, _)| (k.clone(), String::new()))
        .collect();
    let mut table = target.prepare(&columns, &Shape::Unknown)?;
    let mut rows = 0u64;
    let mut current = Some(first);
    let mut vals: Vec<SqlVal> = Vec::with_capacity(columns.len());
    while let Some(row) = current {
        if row.0.len() != columns.len() || row.0.iter().zip(&columns).any(|((k, _), (c, _))| k != c)
        {
            return Err(lines.malformed(lines.line, "keys differ from the first line".to_string()));
        }
        vals.clear();
        for (i, (_, v)) in row.0.into_iter().enumerate() {
            if table.inserts(i) {
                vals.push(json_to_sql(v).map_err(|r| lines.malformed(lines.line, r))?);
            }
        }
        table.insert(&vals)?;
        rows += 1;
        current = lines.next_row()?;
    }
    Ok(rows)
}

/// A JSON object with its keys in file order.
pub(super) struct OrderedRow(Vec<(String, serde_json::Value)>);

impl<'de> Deserialize<'de> for OrderedRow {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = OrderedRow;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<OrderedRow, A::Error> {
                let mut v = Vec::new();
                while let Some(entry) = map.next_entry::<String, serde_json::Value>()? {
                    v.push(entry);
                }
                Ok(OrderedRow(v))
            }
        }
        d.deserialize_map(V)
    }
}
