//! Turning result batches into what people and scripts read: aligned tables,
//! CSV, TSV, a JSON array, JSON lines, Markdown tables.

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
    /// Tab-separated values with a header line.
    Tsv,
    /// One JSON array of row objects, keys in SELECT order.
    Json,
    /// One JSON object per line (newline-delimited JSON), keys in SELECT order.
    #[value(alias = "nd-json")]
    Ndjson,
    /// A GitHub-flavoured Markdown table.
    Markdown,
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
        OutputFormat::Csv | OutputFormat::Tsv => write_delimited(out, batches, format)?,
        OutputFormat::Json => {
            let mut first = true;
            write!(out, "[").map_err(io)?;
            for b in batches {
                for i in 0..b.num_rows() {
                    let sep = if first { "" } else { ",\n" };
                    first = false;
                    write!(out, "{sep}{}", ordered_row_json(b, i)?).map_err(io)?;
                }
            }
            writeln!(out, "]").map_err(io)?;
        }
        OutputFormat::Ndjson => {
            for b in batches {
                for i in 0..b.num_rows() {
                    writeln!(out, "{}", ordered_row_json(b, i)?).map_err(io)?;
                }
            }
        }
        OutputFormat::Markdown => write_markdown(out, batches)?,
    }
    Ok(())
}

/// Row `i` of `b` as one JSON object text with its keys in column (SELECT)
/// order; values as in [`to_json_rows`] (NaN and infinities become null).
fn ordered_row_json(b: &RecordBatch, i: usize) -> Result<String> {
    let mut s = String::from("{");
    for (k, (f, col)) in b.schema().fields().iter().zip(b.columns()).enumerate() {
        if k > 0 {
            s.push(',');
        }
        s.push_str(&serde_json::to_string(f.name())?);
        s.push(':');
        s.push_str(&serde_json::to_string(&json_value(col.as_ref(), i)?)?);
    }
    s.push('}');
    Ok(s)
}

/// CSV (comma) or TSV (tab) with a header line, nested values as text.
fn write_delimited(
    out: &mut dyn Write,
    batches: &[RecordBatch],
    format: OutputFormat,
) -> Result<()> {
    let delimiter = if format == OutputFormat::Tsv {
        b'\t'
    } else {
        b','
    };
    let mut w = datafusion::arrow::csv::WriterBuilder::new()
        .with_header(true)
        .with_delimiter(delimiter)
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
    Ok(())
}

/// A Markdown table: header, `---` rule, one line per row; `|` in values is
/// escaped as `\|`, newlines become spaces, nulls are empty cells.
fn write_markdown(out: &mut dyn Write, batches: &[RecordBatch]) -> Result<()> {
    let io = |e: std::io::Error| Error::io("<stdout>", e);
    let cell = |s: &str| s.replace('|', "\\|").replace(['\n', '\r'], " ");
    let Some(first) = batches.first() else {
        return Ok(());
    };
    let schema = first.schema();
    let names: Vec<String> = schema.fields().iter().map(|f| cell(f.name())).collect();
    writeln!(out, "| {} |", names.join(" | ")).map_err(io)?;
    writeln!(out, "|{}", "---|".repeat(names.len())).map_err(io)?;
    for b in batches {
        let fmts = b
            .columns()
            .iter()
            .map(|c| ArrayFormatter::try_new(c.as_ref(), &FormatOptions::default()))
            .collect::<std::result::Result<Vec<_>, _>>()?;
        for i in 0..b.num_rows() {
            let cells: Vec<String> = fmts.iter().map(|f| cell(&f.value(i).to_string())).collect();
            writeln!(out, "| {} |", cells.join(" | ")).map_err(io)?;
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
