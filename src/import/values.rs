//! Values from Arrow arrays and JSON into SQLite values, keeping each value's storage
//! class (integers, reals, text, blobs, the NUMERIC floats the export marked).

use super::*;

/// An owned SQLite value that can bind TEXT bytes that are not valid UTF-8.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum SqlVal {
    Null,
    Int(i64),
    Real(f64),
    Text(Vec<u8>),
    Blob(Vec<u8>),
}

impl ToSql for SqlVal {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::Borrowed(match self {
            SqlVal::Null => ValueRef::Null,
            SqlVal::Int(i) => ValueRef::Integer(*i),
            SqlVal::Real(r) => ValueRef::Real(*r),
            SqlVal::Text(b) => ValueRef::Text(b),
            SqlVal::Blob(b) => ValueRef::Blob(b),
        }))
    }
}

pub(super) fn numeric_from_f64(r: f64) -> SqlVal {
    if r.fract() == 0.0 && r.abs() <= MAX_SAFE_INT_F64 as f64 {
        SqlVal::Int(r as i64)
    } else {
        SqlVal::Real(r)
    }
}

pub(super) fn u64_to_sql(u: u64) -> SqlVal {
    i64::try_from(u).map_or(SqlVal::Real(u as f64), SqlVal::Int)
}

/// Converts one Arrow value to the SQLite value it stands for.
pub(crate) fn arrow_to_sql(
    array: &dyn Array,
    row: usize,
    numeric_float: bool,
) -> Result<SqlVal, String> {
    if array.is_null(row) {
        return Ok(SqlVal::Null);
    }
    Ok(match array.data_type() {
        DataType::Null => SqlVal::Null,
        DataType::Boolean => SqlVal::Int(i64::from(array.as_boolean().value(row))),
        DataType::Int8 => SqlVal::Int(array.as_primitive::<Int8Type>().value(row).into()),
        DataType::Int16 => SqlVal::Int(array.as_primitive::<Int16Type>().value(row).into()),
        DataType::Int32 => SqlVal::Int(array.as_primitive::<Int32Type>().value(row).into()),
        DataType::Int64 => SqlVal::Int(array.as_primitive::<Int64Type>().value(row)),
        DataType::UInt8 => SqlVal::Int(array.as_primitive::<UInt8Type>().value(row).into()),
        DataType::UInt16 => SqlVal::Int(array.as_primitive::<UInt16Type>().value(row).into()),
        DataType::UInt32 => SqlVal::Int(array.as_primitive::<UInt32Type>().value(row).into()),
        DataType::UInt64 => u64_to_sql(array.as_primitive::<UInt64Type>().value(row)),
        DataType::Float32 => {
            SqlVal::Real(f64::from(array.as_primitive::<Float32Type>().value(row)))
        }
        DataType::Float64 => {
            let r = array.as_primitive::<Float64Type>().value(row);
            if numeric_float {
                numeric_from_f64(r)
            } else {
                SqlVal::Real(r)
            }
        }
        DataType::Utf8 => SqlVal::Text(array.as_string::<i32>().value(row).as_bytes().to_vec()),
        DataType::LargeUtf8 => {
            SqlVal::Text(array.as_string::<i64>().value(row).as_bytes().to_vec())
        }
        DataType::Utf8View => SqlVal::Text(array.as_string_view().value(row).as_bytes().to_vec()),
        DataType::Binary => SqlVal::Blob(array.as_binary::<i32>().value(row).to_vec()),
        DataType::LargeBinary => SqlVal::Blob(array.as_binary::<i64>().value(row).to_vec()),
        DataType::BinaryView => SqlVal::Blob(array.as_binary_view().value(row).to_vec()),
        DataType::FixedSizeBinary(_) => {
            SqlVal::Blob(array.as_fixed_size_binary().value(row).to_vec())
        }
        DataType::Struct(fields) if is_mixed_struct(fields) => mixed_to_sql(array, row)?,
        _ => {
            let mut buf = Vec::new();
            write_arrow_json(&mut buf, array, row).map_err(|e| e.to_string())?;
            // Strings keep their text; nested values stay JSON.
            match serde_json::from_slice::<serde_json::Value>(&buf) {
                Ok(serde_json::Value::String(s)) => SqlVal::Text(s.into_bytes()),
                _ => SqlVal::Text(buf),
            }
        }
    })
}

/// Converts one mixed-value struct (see [`crate::export::ENCODING_SQLITE_VALUE`]) to the
/// SQLite value it stands for.
pub(super) fn mixed_to_sql(array: &dyn Array, row: usize) -> Result<SqlVal, String> {
    let s = array.as_struct();
    let col = |i: usize| s.column(i).as_ref();
    let ty = match arrow_to_sql(col(0), row, false)? {
        SqlVal::Text(t) => t,
        _ => return Err("mixed value without a type".to_string()),
    };
    let v = match ty.as_slice() {
        b"integer" => arrow_to_sql(col(1), row, false)?,
        b"real" => arrow_to_sql(col(2), row, false)?,
        b"text" => match arrow_to_sql(col(3), row, false)? {
            SqlVal::Null => match arrow_to_sql(col(4), row, false)? {
                SqlVal::Blob(b) => SqlVal::Text(b),
                other => other,
            },
            other => other,
        },
        b"blob" => arrow_to_sql(col(4), row, false)?,
        other => {
            return Err(format!(
                "unknown mixed value type {:?}",
                String::from_utf8_lossy(other)
            ));
        }
    };
    if v == SqlVal::Null {
        return Err(format!(
            "mixed value of type {:?} has no value",
            String::from_utf8_lossy(&ty)
        ));
    }
    Ok(v)
}

/// Converts one JSON value (module-doc encoding) to a SQLite value.
pub(crate) fn json_to_sql(v: serde_json::Value) -> Result<SqlVal, String> {
    use serde_json::Value as J;
    Ok(match v {
        J::Null => SqlVal::Null,
        J::Bool(b) => SqlVal::Int(i64::from(b)),
        J::Number(n) => {
            if let Some(i) = n.as_i64() {
                SqlVal::Int(i)
            } else if let Some(u) = n.as_u64() {
                u64_to_sql(u)
            } else {
                SqlVal::Real(n.as_f64().ok_or("number out of range")?)
            }
        }
        J::String(s) => SqlVal::Text(s.into_bytes()),
        J::Object(map) => {
            let mut it = map.iter();
            let tagged = match (it.next(), it.next()) {
                (Some((k, J::String(s))), None) => match (k.as_str(), s.as_str()) {
                    ("$blob_b64", s) => Some(SqlVal::Blob(base64_decode(s).ok_or("bad base64")?)),
                    ("$text_b64", s) => Some(SqlVal::Text(base64_decode(s).ok_or("bad base64")?)),
                    ("$real", "nan") => Some(SqlVal::Real(f64::NAN)),
                    ("$real", "inf") => Some(SqlVal::Real(f64::INFINITY)),
                    ("$real", "-inf") => Some(SqlVal::Real(f64::NEG_INFINITY)),
                    _ => None,
                },
                _ => None,
            };
            match tagged {
                Some(v) => v,
                None => SqlVal::Text(J::Object(map).to_string().into_bytes()),
            }
        }
        other => SqlVal::Text(other.to_string().into_bytes()),
    })
}
