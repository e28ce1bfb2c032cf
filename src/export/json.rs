//! The JSON Lines value encoding (see the module docs of [`crate::export`]): SQLite values
//! and Arrow values written as JSON, tagged objects for what JSON cannot say (non-finite
//! reals, BLOBs, TEXT that is not UTF-8), and the base64 those tags use.

use std::io::{self, Write};

use arrow::array::{Array, ArrayRef, AsArray};
use arrow::datatypes::{
    DataType, Float32Type, Float64Type, Int8Type, Int16Type, Int32Type, Int64Type, UInt8Type,
    UInt16Type, UInt32Type, UInt64Type,
};
use arrow::util::display::{ArrayFormatter, FormatOptions};
use base64::Engine as _;
use base64::alphabet;
use base64::engine::{GeneralPurpose, GeneralPurposeConfig};
use rusqlite::types::ValueRef;

/// Standard alphabet, padded. Decoding accepts nonzero bits after the last full byte, as
/// dbguard's own decoder always did, so a file it read before still loads.
const BASE64: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_allow_trailing_bits(true),
);

pub(super) fn base64_encode(data: &[u8]) -> String {
    BASE64.encode(data)
}

/// `None` unless `s` is padded standard base64.
pub(crate) fn base64_decode(s: &str) -> Option<Vec<u8>> {
    BASE64.decode(s).ok()
}

/// One SQLite row as a JSON object: `keys` are the encoded column names (each with its
/// `:`), the values are the row's columns in the same order.
pub(super) fn write_sqlite_row<W: Write>(
    w: &mut W,
    keys: &[Vec<u8>],
    row: &rusqlite::Row<'_>,
) -> io::Result<()> {
    w.write_all(b"{")?;
    for (i, key) in keys.iter().enumerate() {
        if i > 0 {
            w.write_all(b",")?;
        }
        w.write_all(key)?;
        let v = row.get_ref(i).map_err(io::Error::other)?;
        write_sqlite_json(w, v)?;
    }
    w.write_all(b"}\n")
}

fn write_sqlite_json<W: Write>(w: &mut W, v: ValueRef<'_>) -> io::Result<()> {
    match v {
        ValueRef::Null => w.write_all(b"null"),
        ValueRef::Integer(i) => write!(w, "{i}"),
        ValueRef::Real(r) => write_json_f64(w, r),
        ValueRef::Text(bytes) => match std::str::from_utf8(bytes) {
            Ok(s) => Ok(serde_json::to_writer(w, s)?),
            Err(_) => write!(w, "{{\"$text_b64\":\"{}\"}}", base64_encode(bytes)),
        },
        ValueRef::Blob(bytes) => write_blob(w, bytes),
    }
}

fn write_json_f64<W: Write>(w: &mut W, r: f64) -> io::Result<()> {
    if r.is_finite() {
        Ok(serde_json::to_writer(w, &r)?)
    } else if r.is_nan() {
        w.write_all(br#"{"$real":"nan"}"#)
    } else if r > 0.0 {
        w.write_all(br#"{"$real":"inf"}"#)
    } else {
        w.write_all(br#"{"$real":"-inf"}"#)
    }
}

/// The rows of a record batch as JSON lines; `keys` as for [`write_sqlite_row`].
pub(super) fn write_batch_jsonl<W: Write>(
    w: &mut W,
    keys: &[Vec<u8>],
    columns: &[ArrayRef],
) -> io::Result<()> {
    let rows = columns.first().map_or(0, |c| c.len());
    for row in 0..rows {
        w.write_all(b"{")?;
        for (i, (key, col)) in keys.iter().zip(columns).enumerate() {
            if i > 0 {
                w.write_all(b",")?;
            }
            w.write_all(key)?;
            write_arrow_json(w, col.as_ref(), row)?;
        }
        w.write_all(b"}\n")?;
    }
    Ok(())
}

fn write_formatted<W: Write>(w: &mut W, array: &dyn Array, row: usize) -> io::Result<()> {
    let opts = FormatOptions::default();
    let fmt = ArrayFormatter::try_new(array, &opts).map_err(io::Error::other)?;
    Ok(serde_json::to_writer(w, &fmt.value(row).to_string())?)
}

/// Writes one Arrow value as JSON (see the module docs for the encoding).
pub(crate) fn write_arrow_json<W: Write>(
    w: &mut W,
    array: &dyn Array,
    row: usize,
) -> io::Result<()> {
    if array.is_null(row) {
        return w.write_all(b"null");
    }
    match array.data_type() {
        DataType::Null => w.write_all(b"null"),
        DataType::Boolean => w.write_all(if array.as_boolean().value(row) {
            b"true"
        } else {
            b"false"
        }),
        DataType::Int8 => write!(w, "{}", array.as_primitive::<Int8Type>().value(row)),
        DataType::Int16 => write!(w, "{}", array.as_primitive::<Int16Type>().value(row)),
        DataType::Int32 => write!(w, "{}", array.as_primitive::<Int32Type>().value(row)),
        DataType::Int64 => write!(w, "{}", array.as_primitive::<Int64Type>().value(row)),
        DataType::UInt8 => write!(w, "{}", array.as_primitive::<UInt8Type>().value(row)),
        DataType::UInt16 => write!(w, "{}", array.as_primitive::<UInt16Type>().value(row)),
        DataType::UInt32 => write!(w, "{}", array.as_primitive::<UInt32Type>().value(row)),
        DataType::UInt64 => write!(w, "{}", array.as_primitive::<UInt64Type>().value(row)),
        DataType::Float32 => {
            write_json_f64(w, f64::from(array.as_primitive::<Float32Type>().value(row)))
        }
        DataType::Float64 => write_json_f64(w, array.as_primitive::<Float64Type>().value(row)),
        DataType::Utf8 => Ok(serde_json::to_writer(
            w,
            array.as_string::<i32>().value(row),
        )?),
        DataType::LargeUtf8 => Ok(serde_json::to_writer(
            w,
            array.as_string::<i64>().value(row),
        )?),
        DataType::Utf8View => Ok(serde_json::to_writer(w, array.as_string_view().value(row))?),
        DataType::Binary => write_blob(w, array.as_binary::<i32>().value(row)),
        DataType::LargeBinary => write_blob(w, array.as_binary::<i64>().value(row)),
        DataType::BinaryView => write_blob(w, array.as_binary_view().value(row)),
        DataType::FixedSizeBinary(_) => write_blob(w, array.as_fixed_size_binary().value(row)),
        DataType::List(_) => write_json_list(w, array.as_list::<i32>().value(row).as_ref()),
        DataType::LargeList(_) => write_json_list(w, array.as_list::<i64>().value(row).as_ref()),
        DataType::FixedSizeList(_, _) => {
            write_json_list(w, array.as_fixed_size_list().value(row).as_ref())
        }
        DataType::Struct(fields) => {
            let s = array.as_struct();
            w.write_all(b"{")?;
            for (i, (f, col)) in fields.iter().zip(s.columns()).enumerate() {
                if i > 0 {
                    w.write_all(b",")?;
                }
                serde_json::to_writer(&mut *w, f.name())?;
                w.write_all(b":")?;
                write_arrow_json(w, col.as_ref(), row)?;
            }
            w.write_all(b"}")
        }
        _ => write_formatted(w, array, row),
    }
}

fn write_blob<W: Write>(w: &mut W, bytes: &[u8]) -> io::Result<()> {
    write!(w, "{{\"$blob_b64\":\"{}\"}}", base64_encode(bytes))
}

fn write_json_list<W: Write>(w: &mut W, values: &dyn Array) -> io::Result<()> {
    w.write_all(b"[")?;
    for i in 0..values.len() {
        if i > 0 {
            w.write_all(b",")?;
        }
        write_arrow_json(w, values, i)?;
    }
    w.write_all(b"]")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64() {
        for data in [&b""[..], b"a", b"ab", b"abc", b"abcd", &[0xff, 0x00, 0xfe]] {
            assert_eq!(base64_decode(&base64_encode(data)).as_deref(), Some(data));
        }
        assert_eq!(base64_encode(b"\xff\x00\xfe"), "/wD+");
        assert_eq!(base64_decode("a==="), None);
        assert_eq!(base64_decode("abc"), None);
    }
}
