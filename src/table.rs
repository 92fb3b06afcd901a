//! Turning result batches into what people and scripts read: aligned tables,
//! CSV, JSON rows.

use std::io::Write;

use datafusion::arrow::array::{Array, RecordBatch};
use datafusion::arrow::datatypes::DataType;
use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};
use datafusion::prelude::SessionContext;
use datafusion::scalar::ScalarValue;

use crate::error::{Error, Result};

/// Output formats of `custval sql`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OutputFormat {
    /// Aligned columns.
    Table,
    /// CSV with a header line.
    Csv,
    /// One JSON object per row.
    Json,
}

/// Rows as JSON objects (numbers stay numbers; NaN and infinities become null).
pub fn to_json_rows(
    batches: &[RecordBatch],
) -> Result<Vec<serde_json::Map<String, serde_json::Value>>> {
    let mut rows = Vec::new();
    for b in batches {
        let schema = b.schema();
        for i in 0..b.num_rows() {
            let mut row = serde_json::Map::new();
            for (f, col) in schema.fields().iter().zip(b.columns()) {
                row.insert(f.name().clone(), json_value(col.as_ref(), i)?);
            }
            rows.push(row);
        }
    }
    Ok(rows)
}

fn json_value(col: &dyn Array, i: usize) -> Result<serde_json::Value> {
    use serde_json::Value;
    if col.is_null(i) {
        return Ok(Value::Null);
    }
    let s = ScalarValue::try_from_array(col, i)?;
    Ok(match s {
        ScalarValue::Boolean(Some(b)) => Value::Bool(b),
        ScalarValue::Float64(Some(v)) => serde_json::Number::from_f64(v)
            .map(Value::Number)
            .unwrap_or(Value::Null),
        ScalarValue::Float32(Some(v)) => serde_json::Number::from_f64(v as f64)
            .map(Value::Number)
            .unwrap_or(Value::Null),
        ScalarValue::Int8(Some(v)) => v.into(),
        ScalarValue::Int16(Some(v)) => v.into(),
        ScalarValue::Int32(Some(v)) => v.into(),
        ScalarValue::Int64(Some(v)) => v.into(),
        ScalarValue::UInt8(Some(v)) => v.into(),
        ScalarValue::UInt16(Some(v)) => v.into(),
        ScalarValue::UInt32(Some(v)) => v.into(),
        ScalarValue::UInt64(Some(v)) => v.into(),
        ScalarValue::Struct(arr) => {
            let mut m = serde_json::Map::new();
            for (f, c) in arr.fields().iter().zip(arr.columns()) {
                m.insert(f.name().clone(), json_value(c.as_ref(), 0)?);
            }
            Value::Object(m)
        }
        ScalarValue::List(arr) => {
            let values = arr.value(0);
            let mut v = Vec::with_capacity(values.len());
            for j in 0..values.len() {
                v.push(json_value(values.as_ref(), j)?);
            }
            Value::Array(v)
        }
        other => {
            let fmt = ArrayFormatter::try_new(col, &FormatOptions::default())?;
            let _ = other;
            Value::String(fmt.value(i).to_string())
        }
    })
}

/// Write batches in a format.
pub fn write(out: &mut dyn Write, batches: &[RecordBatch], format: OutputFormat) -> Result<()> {
    let io = |e: std::io::Error| Error::io("<stdout>", e);
    match format {
        OutputFormat::Table => {
            let s = datafusion::arrow::util::pretty::pretty_format_batches(batches)?;
            writeln!(out, "{s}").map_err(io)?;
        }
        OutputFormat::Csv => {
            let mut w = datafusion::arrow::csv::WriterBuilder::new()
                .with_header(true)
                .build(out);
            for b in batches {
                let flat = flatten_for_csv(b)?;
                // Arrow's CSV writer turns I/O errors into text; keep a closed
                // pipe recognisable so `| head` ends quietly.
                w.write(&flat).map_err(|e| {
                    if e.to_string().contains("Broken pipe") {
                        Error::io(
                            "<stdout>",
                            std::io::Error::from(std::io::ErrorKind::BrokenPipe),
                        )
                    } else {
                        Error::from(e)
                    }
                })?;
            }
        }
        OutputFormat::Json => {
            for row in to_json_rows(batches)? {
                let line = serde_json::to_string(&row)?;
                writeln!(out, "{line}").map_err(io)?;
            }
        }
    }
    Ok(())
}

/// CSV cannot hold nested values: render structs and lists as text.
fn flatten_for_csv(b: &RecordBatch) -> Result<RecordBatch> {
    use datafusion::arrow::array::StringArray;
    use datafusion::arrow::datatypes::{Field, Schema};
    use std::sync::Arc;
    let mut fields = Vec::new();
    let mut cols: Vec<Arc<dyn Array>> = Vec::new();
    for (f, c) in b.schema().fields().iter().zip(b.columns()) {
        if matches!(
            f.data_type(),
            DataType::Struct(_) | DataType::List(_) | DataType::LargeList(_)
        ) {
            let fmt = ArrayFormatter::try_new(c.as_ref(), &FormatOptions::default())?;
            let s: StringArray = (0..c.len())
                .map(|i| {
                    if c.is_null(i) {
                        None
                    } else {
                        Some(fmt.value(i).to_string())
                    }
                })
                .collect();
            fields.push(Field::new(f.name(), DataType::Utf8, true));
            cols.push(Arc::new(s));
        } else {
            fields.push(f.as_ref().clone());
            cols.push(c.clone());
        }
    }
    Ok(RecordBatch::try_new(Arc::new(Schema::new(fields)), cols)?)
}

/// The first row of table `name` as a JSON object; null when the table is
/// absent or empty.
pub async fn first_row_json(ctx: &SessionContext, name: &str) -> Result<serde_json::Value> {
    match rows_json(ctx, name).await? {
        serde_json::Value::Array(mut rows) if !rows.is_empty() => Ok(rows.remove(0)),
        _ => Ok(serde_json::Value::Null),
    }
}

/// Up to 100 rows of table `name` as a JSON array; null when it is absent.
pub async fn rows_json(ctx: &SessionContext, name: &str) -> Result<serde_json::Value> {
    if !ctx.table_exist(name)? {
        return Ok(serde_json::Value::Null);
    }
    let batches = ctx
        .table(name)
        .await?
        .limit(0, Some(100))?
        .collect()
        .await?;
    let rows = to_json_rows(&batches)?;
    Ok(serde_json::Value::Array(
        rows.into_iter().map(serde_json::Value::Object).collect(),
    ))
}
