//! SQLite's dynamically typed columns in Arrow: each column's values are profiled, the
//! profile picks one Arrow type (a struct of every storage class when values are mixed),
//! and a builder per column collects a batch of values of that type.

use std::sync::Arc;

use arrow::array::{
    ArrayRef, BinaryBuilder, Float64Builder, Int64Builder, StringBuilder, StructArray,
};
use arrow::buffer::NullBuffer;
use arrow::datatypes::{DataType, Field, Fields, SchemaRef};
use arrow::error::ArrowError;
use arrow::record_batch::RecordBatch;
use rusqlite::types::ValueRef;

use super::{ENCODING_ALL_NULL, ENCODING_NUMERIC_FLOAT, ENCODING_SQLITE_VALUE, MAX_SAFE_INT_F64};

/// How one column is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ColPlan {
    Int,
    Real,
    NumericFloat,
    Text,
    Blob,
    AllNull,
    Mixed,
}

impl ColPlan {
    /// The plan for a column whose values were profiled as `p`, declared as `decltype`.
    pub(super) fn for_profile(p: ColProfile, decltype: &str) -> ColPlan {
        if p.bad_text {
            return ColPlan::Mixed;
        }
        match (p.int, p.real, p.text, p.blob) {
            (false, false, false, false) => ColPlan::AllNull,
            (true, false, false, false) => ColPlan::Int,
            (false, true, false, false) => ColPlan::Real,
            (false, false, true, false) => ColPlan::Text,
            (false, false, false, true) => ColPlan::Blob,
            (true, true, false, false) if !p.big_int && affinity_is_int_or_numeric(decltype) => {
                ColPlan::NumericFloat
            }
            _ => ColPlan::Mixed,
        }
    }

    pub(super) fn data_type(self) -> DataType {
        match self {
            ColPlan::Int => DataType::Int64,
            ColPlan::Real | ColPlan::NumericFloat => DataType::Float64,
            ColPlan::Text | ColPlan::AllNull => DataType::Utf8,
            ColPlan::Blob => DataType::Binary,
            ColPlan::Mixed => DataType::Struct(mixed_fields()),
        }
    }

    /// The `dbguard.encoding.<col>` metadata value, for plans that need one to be read back.
    pub(super) fn encoding(self) -> Option<&'static str> {
        match self {
            ColPlan::Mixed => Some(ENCODING_SQLITE_VALUE),
            ColPlan::NumericFloat => Some(ENCODING_NUMERIC_FLOAT),
            ColPlan::AllNull => Some(ENCODING_ALL_NULL),
            _ => None,
        }
    }
}

/// The storage classes seen in one column.
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct ColProfile {
    int: bool,
    big_int: bool,
    real: bool,
    text: bool,
    bad_text: bool,
    blob: bool,
}

impl ColProfile {
    pub(super) fn record(&mut self, v: ValueRef<'_>) {
        match v {
            ValueRef::Null => {}
            ValueRef::Integer(v) => {
                self.int = true;
                if v.unsigned_abs() > MAX_SAFE_INT_F64 as u64 {
                    self.big_int = true;
                }
            }
            ValueRef::Real(_) => self.real = true,
            ValueRef::Text(b) => {
                self.text = true;
                if !self.bad_text && std::str::from_utf8(b).is_err() {
                    self.bad_text = true;
                }
            }
            ValueRef::Blob(_) => self.blob = true,
        }
    }
}

/// Whether SQLite gives a column declared `decltype` INTEGER or NUMERIC affinity (the
/// rules of <https://sqlite.org/datatype3.html#determination_of_column_affinity>).
fn affinity_is_int_or_numeric(decltype: &str) -> bool {
    let t = decltype.to_ascii_uppercase();
    if t.contains("INT") {
        return true;
    }
    if t.contains("CHAR") || t.contains("CLOB") || t.contains("TEXT") {
        return false;
    }
    if t.is_empty() || t.contains("BLOB") {
        return false;
    }
    !(t.contains("REAL") || t.contains("FLOA") || t.contains("DOUB"))
}

/// The fields of the mixed-value struct: the storage class, then one field per class.
fn mixed_fields() -> Fields {
    Fields::from(vec![
        Field::new("type", DataType::Utf8, true),
        Field::new("integer", DataType::Int64, true),
        Field::new("real", DataType::Float64, true),
        Field::new("text", DataType::Utf8, true),
        Field::new("blob", DataType::Binary, true),
    ])
}

/// Whether a struct type is the mixed-value struct of [`ENCODING_SQLITE_VALUE`].
pub(crate) fn is_mixed_struct(fields: &Fields) -> bool {
    let names: Vec<&str> = fields.iter().map(|f| f.name().as_str()).collect();
    names == ["type", "integer", "real", "text", "blob"]
}

/// Builds a column of mixed-value structs.
struct MixedBuilder {
    valid: Vec<bool>,
    ty: StringBuilder,
    int: Int64Builder,
    real: Float64Builder,
    text: StringBuilder,
    blob: BinaryBuilder,
}

impl MixedBuilder {
    fn new() -> Self {
        MixedBuilder {
            valid: Vec::new(),
            ty: StringBuilder::new(),
            int: Int64Builder::new(),
            real: Float64Builder::new(),
            text: StringBuilder::new(),
            blob: BinaryBuilder::new(),
        }
    }

    fn append(&mut self, v: ValueRef<'_>) {
        let (ty, i, r, t, b): (Option<&str>, _, _, Option<&str>, Option<&[u8]>) = match v {
            ValueRef::Null => (None, None, None, None, None),
            ValueRef::Integer(i) => (Some("integer"), Some(i), None, None, None),
            ValueRef::Real(r) => (Some("real"), None, Some(r), None, None),
            ValueRef::Text(bytes) => match std::str::from_utf8(bytes) {
                Ok(s) => (Some("text"), None, None, Some(s), None),
                Err(_) => (Some("text"), None, None, None, Some(bytes)),
            },
            ValueRef::Blob(bytes) => (Some("blob"), None, None, None, Some(bytes)),
        };
        self.valid.push(ty.is_some());
        self.ty.append_option(ty);
        self.int.append_option(i);
        self.real.append_option(r);
        self.text.append_option(t);
        self.blob.append_option(b);
    }

    fn finish(&mut self) -> Result<ArrayRef, ArrowError> {
        let nulls = NullBuffer::from(std::mem::take(&mut self.valid));
        let arrays: Vec<ArrayRef> = vec![
            Arc::new(self.ty.finish()),
            Arc::new(self.int.finish()),
            Arc::new(self.real.finish()),
            Arc::new(self.text.finish()),
            Arc::new(self.blob.finish()),
        ];
        Ok(Arc::new(StructArray::try_new(
            mixed_fields(),
            arrays,
            Some(nulls),
        )?))
    }
}

/// Builds one column of the type its [`ColPlan`] chose.
enum ColBuilder {
    Int(Int64Builder),
    Real(Float64Builder),
    Text(StringBuilder),
    Blob(BinaryBuilder),
    Mixed(Box<MixedBuilder>),
}

impl ColBuilder {
    fn new(plan: ColPlan) -> Self {
        match plan {
            ColPlan::Int => ColBuilder::Int(Int64Builder::new()),
            ColPlan::Real | ColPlan::NumericFloat => ColBuilder::Real(Float64Builder::new()),
            ColPlan::Text | ColPlan::AllNull => ColBuilder::Text(StringBuilder::new()),
            ColPlan::Blob => ColBuilder::Blob(BinaryBuilder::new()),
            ColPlan::Mixed => ColBuilder::Mixed(Box::new(MixedBuilder::new())),
        }
    }

    /// Appends `v`; `Err` names the storage class that does not fit the profiled plan.
    fn append(&mut self, v: ValueRef<'_>) -> Result<(), &'static str> {
        match (self, v) {
            (ColBuilder::Mixed(b), v) => b.append(v),
            (ColBuilder::Int(b), ValueRef::Null) => b.append_null(),
            (ColBuilder::Real(b), ValueRef::Null) => b.append_null(),
            (ColBuilder::Text(b), ValueRef::Null) => b.append_null(),
            (ColBuilder::Blob(b), ValueRef::Null) => b.append_null(),
            (ColBuilder::Int(b), ValueRef::Integer(i)) => b.append_value(i),
            (ColBuilder::Real(b), ValueRef::Real(r)) => b.append_value(r),
            (ColBuilder::Real(b), ValueRef::Integer(i))
                if i.unsigned_abs() <= MAX_SAFE_INT_F64 as u64 =>
            {
                b.append_value(i as f64)
            }
            (ColBuilder::Text(b), ValueRef::Text(bytes)) => match std::str::from_utf8(bytes) {
                Ok(s) => b.append_value(s),
                Err(_) => return Err("TEXT that is not UTF-8"),
            },
            (ColBuilder::Blob(b), ValueRef::Blob(bytes)) => b.append_value(bytes),
            (_, v) => return Err(storage_class(v)),
        }
        Ok(())
    }

    fn finish(&mut self) -> Result<ArrayRef, ArrowError> {
        Ok(match self {
            ColBuilder::Int(b) => Arc::new(b.finish()),
            ColBuilder::Real(b) => Arc::new(b.finish()),
            ColBuilder::Text(b) => Arc::new(b.finish()),
            ColBuilder::Blob(b) => Arc::new(b.finish()),
            ColBuilder::Mixed(b) => b.finish()?,
        })
    }
}

fn storage_class(v: ValueRef<'_>) -> &'static str {
    match v {
        ValueRef::Null => "NULL",
        ValueRef::Integer(_) => "INTEGER",
        ValueRef::Real(_) => "REAL",
        ValueRef::Text(_) => "TEXT",
        ValueRef::Blob(_) => "BLOB",
    }
}

/// The rows of one table collected into a record batch of the planned column types.
pub(super) struct BatchBuilder {
    schema: SchemaRef,
    columns: Vec<ColBuilder>,
    rows: usize,
}

impl BatchBuilder {
    pub(super) fn new(schema: SchemaRef, plans: impl IntoIterator<Item = ColPlan>) -> Self {
        BatchBuilder {
            schema,
            columns: plans.into_iter().map(ColBuilder::new).collect(),
            rows: 0,
        }
    }

    /// Appends the value of column `column` of the current row; `Err` names the storage
    /// class that does not fit the profiled plan.
    pub(super) fn append(&mut self, column: usize, v: ValueRef<'_>) -> Result<(), &'static str> {
        self.columns[column].append(v)
    }

    /// Ends the current row; returns the number of rows now in the batch.
    pub(super) fn end_row(&mut self) -> usize {
        self.rows += 1;
        self.rows
    }

    pub(super) fn is_empty(&self) -> bool {
        self.rows == 0
    }

    /// The rows collected so far as one batch; the builder starts again empty.
    pub(super) fn take_batch(&mut self) -> Result<RecordBatch, ArrowError> {
        self.rows = 0;
        let arrays = self
            .columns
            .iter_mut()
            .map(ColBuilder::finish)
            .collect::<Result<Vec<_>, _>>()?;
        RecordBatch::try_new(self.schema.clone(), arrays)
    }
}
