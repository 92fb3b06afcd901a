//! The transactions input as the SQL steps see it: the canonical columns
//! (the job's mapping applied), values parsed (NULL when a value does not
//! parse), the purchase day as the UTC day of each instant, and the raw text
//! of each column for `rejected_rows`.

use datafusion::arrow::datatypes::{DataType, TimeUnit};
use datafusion::prelude::SessionContext;

use super::schema::is_text;
use super::{is_temporal, quote, source_column};
use crate::error::Result;
use crate::job::InputSpec;

/// Canonical columns of a transactions input: (name, required).
pub const TRANSACTION_COLUMNS: &[(&str, bool)] = &[
    ("customer_id", true),
    ("order_ts", true),
    ("amount", true),
    ("order_id", false),
    ("category", false),
    ("margin", false),
    ("peer_group", false),
];

/// The typed view `NAME_typed`: canonical names, parsed values (NULL when a
/// value does not parse) and the raw text for `rejected_rows`.
pub(super) async fn transactions_view_sql(
    raw_name: &str,
    spec: &InputSpec,
    ctx: &SessionContext,
    name: &str,
) -> Result<String> {
    let schema = ctx.table(raw_name).await?.schema().as_arrow().clone();
    let col_type = |canonical: &str| -> Option<(String, DataType)> {
        let source = source_column(spec, canonical);
        let mapped = spec.columns.contains_key(canonical);
        let required = TRANSACTION_COLUMNS
            .iter()
            .any(|(c, r)| *c == canonical && *r);
        if !mapped && !required && schema.field_with_name(source).is_err() {
            return None;
        }
        schema
            .field_with_name(source)
            .ok()
            .map(|f| (quote(source), f.data_type().clone()))
    };
    let _ = name;
    // A missing optional column is NULL on every row, but not as a literal:
    // a constant in the deduplication's GROUP BY makes DataFusion 55 plan a
    // partially sorted aggregate whose emits copy all groups again each time
    // (31 of 43 s of the nightly job at 6.6M rows; 1.2 s without). NULLIF of a
    // column with itself is NULL too, and the optimizer does not fold it.
    // NULLIF on the source column itself, cast afterwards: casting an
    // integer id to text on every row first cost 1.5% of the CLV job.
    let null = match col_type("customer_id") {
        Some((c, _)) => format!("NULLIF({c}, {c})"),
        None => "NULL".into(),
    };
    let mut select = Vec::new();
    // customer_id: trimmed text or an integer, empty text is missing.
    select.push(match col_type("customer_id") {
        Some((c, t)) if is_text(&t) => {
            format!("NULLIF(TRIM(CAST({c} AS VARCHAR)), '') AS customer_id")
        }
        Some((c, _)) => format!("{c} AS customer_id"),
        None => "CAST(NULL AS VARCHAR) AS customer_id".into(),
    });
    select.push(match col_type("order_ts") {
        Some((c, DataType::Date32)) => format!("{c} AS order_ts"),
        // Arrow gives a zoned timestamp's local day; the purchase day is
        // the UTC day of the instant, as for naive timestamps and offsets.
        Some((c, DataType::Timestamp(unit, Some(_)))) => format!(
            "CAST(arrow_cast({c}, '{}') AS DATE) AS order_ts",
            utc_timestamp(unit)
        ),
        Some((c, t)) if is_temporal(&t) => format!("CAST({c} AS DATE) AS order_ts"),
        Some((c, _)) => format!(
            "COALESCE(TRY_CAST(TRIM({c}) AS DATE), CAST(TRY_CAST(TRIM({c}) AS TIMESTAMP) AS DATE)) AS order_ts"
        ),
        None => "CAST(NULL AS DATE) AS order_ts".into(),
    });
    let decimal_comma = spec.csv.decimal.as_deref() == Some(",");
    for money in ["amount", "margin"] {
        select.push(money_sql(money, col_type(money), decimal_comma, &null));
    }
    for text in ["order_id", "category", "peer_group"] {
        select.push(match col_type(text) {
            Some((c, t)) if is_text(&t) => {
                format!("NULLIF(TRIM(CAST({c} AS VARCHAR)), '') AS {text}")
            }
            // Integer order ids stay integers: cheaper to deduplicate.
            Some((c, _)) if text == "order_id" => format!("{c} AS {text}"),
            Some((c, _)) => format!("CAST({c} AS VARCHAR) AS {text}"),
            None => format!("CAST({null} AS VARCHAR) AS {text}"),
        });
    }
    // Only text ids can be absurdly long; integers skip the check.
    select.push(match col_type("customer_id") {
        Some((c, t)) if is_text(&t) => {
            format!("coalesce(character_length({c}) > 256, false) AS customer_id_too_long")
        }
        _ => "false AS customer_id_too_long".into(),
    });
    for raw in [
        "customer_id",
        "order_ts",
        "amount",
        "order_id",
        "category",
        "margin",
    ] {
        select.push(match col_type(raw) {
            Some((c, _)) => format!("CAST({c} AS VARCHAR) AS raw_{raw}"),
            None => format!("CAST(NULL AS VARCHAR) AS raw_{raw}"),
        });
    }
    Ok(format!(
        "SELECT {} FROM {}",
        select.join(",\n  "),
        quote(raw_name)
    ))
}

/// The SQL of money column `money` from its source column and type (`None`:
/// absent, NULL on every row as `null`): text parsed (with a decimal comma
/// when `decimal_comma`), numbers cast, NULL when a value does not parse.
fn money_sql(
    money: &str,
    source: Option<(String, DataType)>,
    decimal_comma: bool,
    null: &str,
) -> String {
    match source {
        Some((c, t)) if is_text(&t) && decimal_comma => {
            format!("{} AS {money}", decimal_comma_number(&c))
        }
        Some((c, t)) if is_text(&t) => format!("TRY_CAST(TRIM({c}) AS DOUBLE) AS {money}"),
        Some((c, _)) => format!("CAST({c} AS DOUBLE) AS {money}"),
        None => format!("CAST({null} AS DOUBLE) AS {money}"),
    }
}

/// SQL parsing text column `c` written with a decimal comma (`12,50`,
/// `-1.234,5`: `.` only between groups of three digits) as a DOUBLE; NULL
/// (a rejected row) for anything else, a decimal point included (`12.50`
/// would otherwise be read as 1250).
fn decimal_comma_number(c: &str) -> String {
    format!(
        "CASE WHEN regexp_like(TRIM({c}), '^[+-]?([0-9]+|[0-9]{{1,3}}([.][0-9]{{3}})+)(,[0-9]+)?$') \
         THEN TRY_CAST(replace(replace(TRIM({c}), '.', ''), ',', '.') AS DOUBLE) END"
    )
}

/// The Arrow type name of a UTC timestamp in `unit`, for `arrow_cast`.
fn utc_timestamp(unit: TimeUnit) -> String {
    DataType::Timestamp(unit, Some("UTC".into())).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::{Array, Float64Array};

    #[tokio::test]
    async fn decimal_comma_amounts_parse_and_anything_else_is_null() {
        // (text, expected): the values as a European export writes them.
        let cases: [(&str, Option<f64>); 9] = [
            ("12,50", Some(12.5)),
            (" -3,25 ", Some(-3.25)),
            ("7", Some(7.0)),
            ("1.234,5", Some(1234.5)),
            ("1.234.567", Some(1_234_567.0)),
            ("12.50", None),
            ("1,2,3", None),
            ("abc", None),
            ("", None),
        ];
        let values: Vec<String> = cases.iter().map(|(t, _)| format!("('{t}')")).collect();
        let sql = format!(
            "SELECT {} AS v FROM (VALUES {}) AS t(a)",
            decimal_comma_number("a"),
            values.join(", ")
        );
        let batches = SessionContext::new()
            .sql(&sql)
            .await
            .unwrap()
            .collect()
            .await
            .unwrap();
        let col = batches[0]
            .column(0)
            .as_any()
            .downcast_ref::<Float64Array>()
            .unwrap()
            .clone();
        for (i, (text, want)) in cases.iter().enumerate() {
            let got = (!col.is_null(i)).then(|| col.value(i));
            assert_eq!(got, *want, "{text:?}");
        }
    }
}
