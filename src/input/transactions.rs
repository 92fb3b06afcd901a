//! The transactions input as the SQL steps see it: the canonical columns
//! (the job's mapping applied: names or expressions over the raw columns),
//! values parsed (NULL when a value does not parse, with `parse_error`
//! naming the column and value where the mapping parsed it), ids written as
//! floats made integers, the purchase day as the calendar day in the job's
//! timezone of each instant, the `where` filter as the `filtered` flag, and
//! the raw text of each column for `rejected_rows`.

use std::collections::HashMap;

use datafusion::arrow::datatypes::{DataType, Schema, TimeUnit};
use datafusion::prelude::SessionContext;

use super::blame::MappedExpression;
use super::mapping::{Expression, Mapping, Source};
use super::schema::is_text;
use super::source::{first_line, Sampled};
use super::{is_temporal, quote};
use crate::error::{Error, Result};
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

/// The largest integer a double holds exactly (2^53): a float id beyond it
/// is not an id.
const EXACT_DOUBLE: &str = "9007199254740992";

/// What building the typed view needs to know about one input.
pub(super) struct ViewInput<'a> {
    /// The registered raw table.
    pub raw_name: &'a str,
    /// The input's name in the job, for messages.
    pub name: &'a str,
    /// Its redacted URL, for messages.
    pub url: &'a str,
    /// The job's spec of the input.
    pub spec: &'a InputSpec,
    /// The mapping, resolved against the raw table's schema.
    pub mapping: &'a Mapping,
    /// For a CSV read as text: what each column's sampled values were.
    pub sampled: &'a HashMap<String, Sampled>,
    /// The timezone of the purchase day.
    pub timezone: &'a str,
}

/// One canonical column's source as SQL over the raw table, and its type.
#[derive(Debug, Clone)]
struct Mapped {
    sql: String,
    data_type: DataType,
    /// The text columns an expression parses as numbers.
    parsed: Vec<String>,
    /// Whether `parsed` columns are written with a decimal comma.
    decimal_comma: bool,
    expr: Option<Expression>,
}

impl ViewInput<'_> {
    /// Whether the input's CSV dialect writes numbers with a decimal comma.
    fn decimal_comma(&self) -> bool {
        self.spec.csv.decimal.as_deref() == Some(",")
    }

    fn error(&self, message: String) -> Error {
        Error::InputSchema {
            input: self.name.to_string(),
            url: self.url.to_string(),
            message,
        }
    }

    /// Whether an expression parses a raw column as a number: a text column
    /// it uses in arithmetic (or compares with a number), or, in an amount
    /// or margin, a CSV text column whose sample holds numbers or nothing.
    fn parses_as_number(&self, schema: &Schema, e: &Expression, column: &str, money: bool) -> bool {
        let text = schema
            .field_with_name(column)
            .is_ok_and(|f| is_text(f.data_type()));
        let sampled = matches!(
            self.sampled.get(column),
            Some(Sampled::Numbers | Sampled::Empty)
        );
        text && (e.in_arithmetic.iter().any(|c| c == column) || (money && sampled))
    }

    /// Plan an expression (`canonical` or `where`) over the raw table. In a
    /// money expression (`amount`, `margin`) every number is a DOUBLE: text
    /// parsed ([`text_number`]), integer and decimal columns cast.
    async fn expression(
        &self,
        ctx: &SessionContext,
        schema: &Schema,
        canonical: &str,
        e: &Expression,
    ) -> Result<Mapped> {
        let money = matches!(canonical, "amount" | "margin");
        let parsed: Vec<String> = e
            .columns
            .iter()
            .filter(|c| self.parses_as_number(schema, e, c, money))
            .cloned()
            .collect();
        let sql = e.sql_with(|c| {
            if parsed.iter().any(|p| p == c) {
                text_number(&quote(c), self.decimal_comma())
            } else if money && is_exact_number(schema, c) {
                format!("CAST({} AS DOUBLE)", quote(c))
            } else {
                quote(c)
            }
        })?;
        let plan = async {
            let df = ctx
                .sql(&format!("SELECT {sql} AS v FROM {}", quote(self.raw_name)))
                .await?;
            Ok::<_, datafusion::error::DataFusionError>(df.schema().field(0).data_type().clone())
        };
        let data_type = plan.await.map_err(|err| {
            self.error(format!(
                "{canonical} = {:?} does not type-check: {}",
                e.written,
                first_line(&err.to_string())
            ))
        })?;
        Ok(Mapped {
            sql,
            data_type,
            parsed,
            decimal_comma: self.decimal_comma(),
            expr: Some(e.clone()),
        })
    }

    /// Every canonical column the view reads, with its SQL and type.
    async fn sources(
        &self,
        ctx: &SessionContext,
        schema: &Schema,
    ) -> Result<HashMap<&'static str, Mapped>> {
        let mut out = HashMap::new();
        for (canonical, _) in TRANSACTION_COLUMNS {
            let mapped = match self.mapping.columns.get(*canonical) {
                None => continue,
                Some(Source::Column(c)) => Mapped {
                    sql: quote(c),
                    data_type: schema
                        .field_with_name(c)
                        .map(|f| f.data_type().clone())
                        .unwrap_or(DataType::Utf8),
                    parsed: vec![],
                    decimal_comma: false,
                    expr: None,
                },
                Some(Source::Expr(e)) => self.expression(ctx, schema, canonical, e).await?,
            };
            check_kind(canonical, &mapped.data_type).map_err(|why| {
                let source = match &mapped.expr {
                    Some(e) => format!("expression {:?}", e.written),
                    None => format!("column {}", mapped.sql),
                };
                self.error(format!("{source} (mapped to {canonical}) {why}"))
            })?;
            out.insert(*canonical, mapped);
        }
        Ok(out)
    }
}

/// Whether raw column `c` holds integers or decimals. A money expression
/// reads such a column as a DOUBLE, as it reads a CSV text column, so that
/// `amount_cents / 100` divides the same on a Parquet Int64 column (where
/// SQL would divide integers: 1999 / 100 = 19) as on CSV text (19.99).
fn is_exact_number(schema: &Schema, c: &str) -> bool {
    schema
        .field_with_name(c)
        .is_ok_and(|f| f.data_type().is_numeric() && !f.data_type().is_floating())
}

/// Whether a value of type `t` can be the canonical column: `Err` says why not.
fn check_kind(canonical: &str, t: &DataType) -> std::result::Result<(), String> {
    let ok = match canonical {
        "customer_id" | "order_id" => is_text(t) || t.is_numeric(),
        "category" | "peer_group" => is_text(t) || t.is_integer(),
        "order_ts" => is_text(t) || is_temporal(t),
        "amount" | "margin" => is_text(t) || t.is_numeric(),
        _ => true,
    };
    if ok {
        Ok(())
    } else {
        Err(format!(
            "has type {t}, which cannot hold {canonical} values"
        ))
    }
}

/// A SQL string literal.
fn literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// The typed view `NAME_typed`: canonical names, parsed values (NULL when a
/// value does not parse), `parse_error`, `filtered` and the raw text for
/// `rejected_rows`; and the mapping's expressions as it computes them.
///
/// Errors: [`Error::InputSchema`] when an expression or the filter does not
/// type-check or gives a type its canonical column cannot hold.
pub(super) async fn transactions_view_sql(
    ctx: &SessionContext,
    input: &ViewInput<'_>,
) -> Result<(String, Vec<MappedExpression>)> {
    let schema = ctx.table(input.raw_name).await?.schema().as_arrow().clone();
    let sources = input.sources(ctx, &schema).await?;
    let filter = match &input.mapping.filter {
        Some(f) => {
            let m = input.expression(ctx, &schema, "where", f).await?;
            if m.data_type != DataType::Boolean && m.data_type != DataType::Null {
                return Err(input.error(format!(
                    "where = {:?} is not a condition: it gives {}",
                    f.written, m.data_type
                )));
            }
            Some(m)
        }
        None => None,
    };
    let col = |c: &str| sources.get(c).map(|m| (m.sql.clone(), m.data_type.clone()));
    let mut select = canonical_values(&col, input);
    select.push(parse_errors(&sources, filter.as_ref()));
    select.push(match &filter {
        None => "false AS filtered".into(),
        Some(f) => match number_errors("where", f) {
            Some(err) => format!(
                "CASE WHEN {err} IS NOT NULL THEN false ELSE coalesce(NOT {}, true) END AS filtered",
                f.sql
            ),
            None => format!("coalesce(NOT {}, true) AS filtered", f.sql),
        },
    });
    for raw in [
        "customer_id",
        "order_ts",
        "amount",
        "order_id",
        "category",
        "margin",
    ] {
        select.push(format!("{} AS raw_{raw}", raw_text(sources.get(raw))));
    }
    select.push(line_key(&schema, &sources));
    let view = format!(
        "SELECT {} FROM {}",
        select.join(",\n  "),
        quote(input.raw_name)
    );
    Ok((view, expressions(&sources, filter.as_ref())))
}

/// The mapping's expressions and the filter, in [`TRANSACTION_COLUMNS`]
/// order, as the view computes them.
fn expressions(
    sources: &HashMap<&'static str, Mapped>,
    filter: Option<&Mapped>,
) -> Vec<MappedExpression> {
    let columns = TRANSACTION_COLUMNS
        .iter()
        .filter_map(|(c, _)| sources.get(c).map(|m| (*c, m)));
    columns
        .chain(filter.map(|f| ("where", f)))
        .filter_map(|(canonical, m)| {
            m.expr.as_ref().map(|e| MappedExpression {
                canonical: canonical.to_string(),
                written: e.written.clone(),
                sql: m.sql.clone(),
            })
        })
        .collect()
}

/// `line_key`: what tells two lines of one order apart beyond their
/// canonical values, so that only an exact repeat of a raw row is an export
/// duplicate: the text of every raw column the mapping does not read as it
/// is (a product code, a description, an expression's operands), and the
/// raw timestamp when the view keeps only its day. Two lines of one invoice
/// with the same amount but different products are two lines (an
/// Online-Retail-shaped export lost 42 such lines when only the mapped
/// columns were compared). NULL on every row when the canonical values
/// already are the whole row.
fn line_key(schema: &Schema, sources: &HashMap<&'static str, Mapped>) -> String {
    let covered: Vec<&str> = sources
        .iter()
        .filter(|(canonical, m)| {
            m.expr.is_none() && (**canonical != "order_ts" || m.data_type == DataType::Date32)
        })
        .map(|(_, m)| m.sql.as_str())
        .collect();
    let parts: Vec<String> = schema
        .fields()
        .iter()
        .map(|f| quote(f.name()))
        .filter(|q| !covered.contains(&q.as_str()))
        .map(|q| format!("coalesce('v' || CAST({q} AS VARCHAR), 'n')"))
        .collect();
    if parts.is_empty() {
        // Not a literal: see `canonical_values` on constants in GROUP BY.
        return match sources.get("customer_id") {
            Some(m) => format!("CAST(NULLIF({0}, {0}) AS VARCHAR) AS line_key", m.sql),
            None => "CAST(NULL AS VARCHAR) AS line_key".into(),
        };
    }
    format!("concat_ws(chr(31), {}) AS line_key", parts.join(", "))
}

/// The canonical columns and `customer_id_too_long`.
fn canonical_values(
    col: &dyn Fn(&str) -> Option<(String, DataType)>,
    input: &ViewInput<'_>,
) -> Vec<String> {
    // A missing optional column is NULL on every row, but not as a literal:
    // a constant in the deduplication's GROUP BY makes DataFusion 55 plan a
    // partially sorted aggregate whose emits copy all groups again each time
    // (31 of 43 s of the nightly job at 6.6M rows; 1.2 s without). NULLIF of a
    // column with itself is NULL too, and the optimizer does not fold it.
    // NULLIF on the source column itself, cast afterwards: casting an
    // integer id to text on every row first cost 1.5% of the CLV job.
    let null = match col("customer_id") {
        Some((c, _)) => format!("NULLIF({c}, {c})"),
        None => "NULL".into(),
    };
    let mut select = Vec::new();
    select.push(match col("customer_id") {
        Some((c, t)) => format!("{} AS customer_id", id_value(&c, &t)),
        None => "CAST(NULL AS VARCHAR) AS customer_id".into(),
    });
    select.push(match col("order_ts") {
        Some((c, t)) => format!(
            "{} AS order_ts",
            day(&c, &t, input.timezone, &input.spec.timestamp_format)
        ),
        None => "CAST(NULL AS DATE) AS order_ts".into(),
    });
    for money in ["amount", "margin"] {
        select.push(match col(money) {
            Some((c, t)) if is_text(&t) => {
                format!("{} AS {money}", text_number(&c, input.decimal_comma()))
            }
            Some((c, _)) => format!("CAST({c} AS DOUBLE) AS {money}"),
            None => format!("CAST({null} AS DOUBLE) AS {money}"),
        });
    }
    for text in ["order_id", "category", "peer_group"] {
        select.push(match col(text) {
            Some((c, t)) if text == "order_id" => format!("{} AS {text}", id_value(&c, &t)),
            Some((c, t)) if is_text(&t) => {
                format!("NULLIF(TRIM(CAST({c} AS VARCHAR)), '') AS {text}")
            }
            Some((c, _)) => format!("CAST({c} AS VARCHAR) AS {text}"),
            None => format!("CAST({null} AS VARCHAR) AS {text}"),
        });
    }
    // Only text ids can be absurdly long; integers skip the check.
    select.push(match col("customer_id") {
        Some((c, t)) if is_text(&t) => {
            format!("coalesce(character_length({c}) > 256, false) AS customer_id_too_long")
        }
        _ => "false AS customer_id_too_long".into(),
    });
    select
}

/// An id as the steps see it: trimmed text (empty is missing) with a
/// float's integral text (`17850.0`) made an integer's (`17850`) and a
/// non-integral number (`17850.5`) NULL; an integer as it is; a float or
/// decimal as an integer when integral, else NULL.
fn id_value(c: &str, t: &DataType) -> String {
    if is_text(t) {
        let v = format!("NULLIF(TRIM(CAST({c} AS VARCHAR)), '')");
        format!(
            "CASE WHEN strpos({v}, '.') = 0 THEN {v} \
             WHEN regexp_like({v}, '^[+-]?[0-9]+\\.0*$') THEN split_part({v}, '.', 1) \
             WHEN regexp_like({v}, '^[+-]?[0-9]*\\.[0-9]+$') THEN NULL ELSE {v} END"
        )
    } else if t.is_integer() {
        c.to_string()
    } else {
        let d = format!("CAST({c} AS DOUBLE)");
        format!(
            "CASE WHEN {d} = trunc({d}) AND abs({d}) < {EXACT_DOUBLE} THEN CAST({d} AS BIGINT) END"
        )
    }
}

/// Whether an id of type `t` can be non-integral (so `id_value` can be NULL
/// where the value is not).
fn id_can_be_non_integral(t: &DataType) -> bool {
    is_text(t) || (t.is_numeric() && !t.is_integer())
}

/// The purchase day: the calendar day in `tz` of the value's instant. A
/// date is that date; a zoned timestamp is its instant; a naive timestamp
/// is a UTC instant; text is read with the job's formats (`parse_day`), or
/// without any as an ISO date, else an ISO timestamp (an offset honoured).
fn day(c: &str, t: &DataType, tz: &str, formats: &[String]) -> String {
    let zoned = |unit: TimeUnit, zone: &str| {
        literal(&DataType::Timestamp(unit, Some(zone.into())).to_string())
    };
    let naive_day = |v: &str, unit: TimeUnit| {
        if tz == "UTC" {
            format!("CAST({v} AS DATE)")
        } else {
            format!(
                "CAST(arrow_cast(arrow_cast({v}, {}), {}) AS DATE)",
                zoned(unit, "UTC"),
                zoned(unit, tz)
            )
        }
    };
    match t {
        DataType::Date32 => c.to_string(),
        // Arrow gives a zoned timestamp's local day: cast to the job's zone.
        DataType::Timestamp(unit, Some(_)) => {
            format!("CAST(arrow_cast({c}, {}) AS DATE)", zoned(*unit, tz))
        }
        DataType::Timestamp(unit, None) => naive_day(c, *unit),
        t if is_temporal(t) => format!("CAST({c} AS DATE)"),
        _ if !formats.is_empty() => {
            let f: Vec<String> = formats.iter().map(|f| literal(f)).collect();
            format!(
                "parse_day(TRIM(CAST({c} AS VARCHAR)), {}, {})",
                literal(tz),
                f.join(", ")
            )
        }
        // Arrow reads a timestamp as a DATE too, as its UTC day: in another
        // zone only text longer than a date is read as a timestamp.
        _ if tz == "UTC" => format!(
            "COALESCE(TRY_CAST(TRIM({c}) AS DATE), CAST(TRY_CAST(TRIM({c}) AS TIMESTAMP) AS DATE))"
        ),
        _ => format!(
            "COALESCE(CASE WHEN character_length(TRIM({c})) > 10 THEN {} END, TRY_CAST(TRIM({c}) AS DATE))",
            naive_day(&format!("TRY_CAST(TRIM({c}) AS TIMESTAMP)"), TimeUnit::Nanosecond)
        ),
    }
}

/// The first value an expression parses as a number and cannot, as a
/// reason: `unparseable amount: Quantity "x" is not a number`.
fn number_errors(canonical: &str, m: &Mapped) -> Option<String> {
    if m.parsed.is_empty() {
        return None;
    }
    let whens: Vec<String> = m
        .parsed
        .iter()
        .map(|c| {
            let v = format!("TRIM({})", quote(c));
            let number = text_number(&quote(c), m.decimal_comma);
            format!(
                "WHEN {v} <> '' AND {number} IS NULL THEN {} || {v} || '\" is not a number'",
                literal(&format!("unparseable {canonical}: {c} \""))
            )
        })
        .collect();
    Some(format!("CASE {} END", whens.join(" ")))
}

/// The first column an expression of a required canonical column reads
/// that is empty where the expression gives NULL, as a reason: `missing
/// amount: UnitPrice is empty` (the row's other operands are there; the
/// reason names the one to fill); all of them empty is left to the plain
/// `missing amount`. `None` for a plain column or one read alone.
fn empty_operands(canonical: &str, m: &Mapped) -> Option<String> {
    let e = m.expr.as_ref().filter(|e| e.columns.len() > 1)?;
    let empty = |c: &str| format!("NULLIF(TRIM(CAST({} AS VARCHAR)), '') IS NULL", quote(c));
    let whens: Vec<String> = e
        .columns
        .iter()
        .map(|c| {
            format!(
                "WHEN {} THEN {}",
                empty(c),
                literal(&format!("missing {canonical}: {c} is empty"))
            )
        })
        .collect();
    // All empty is the plain `missing` reason of the validation step.
    let all: Vec<String> = e.columns.iter().map(|c| empty(c)).collect();
    Some(format!(
        "CASE WHEN {} IS NULL AND NOT ({}) THEN CASE {} END END",
        m.sql,
        all.join(" AND "),
        whens.join(" ")
    ))
}

/// `parse_error`: why the mapping could not read a row's value (NULL when
/// it could): a number an expression reads, or a non-integral id.
fn parse_errors(sources: &HashMap<&'static str, Mapped>, filter: Option<&Mapped>) -> String {
    let mut parts = Vec::new();
    for id in ["customer_id", "order_id"] {
        if let Some(m) = sources
            .get(id)
            .filter(|m| id_can_be_non_integral(&m.data_type))
        {
            let value = format!("NULLIF(TRIM(CAST({} AS VARCHAR)), '')", m.sql);
            // A float's NaN or infinity is no number at all, not a fraction.
            let non_finite = if m.data_type.is_floating() {
                let d = format!("CAST({} AS DOUBLE)", m.sql);
                format!(
                    "WHEN isnan({d}) THEN {} WHEN abs({d}) = CAST('inf' AS DOUBLE) THEN {} || {value} || '\"' ",
                    literal(&format!("{id} is NaN (not a number)")),
                    literal(&format!("non-finite {id} \""))
                )
            } else {
                String::new()
            };
            parts.push(format!(
                "CASE {non_finite}WHEN {value} IS NOT NULL AND {} IS NULL THEN {} || {value} || '\"' END",
                id_value(&m.sql, &m.data_type),
                literal(&format!("non-integral {id} \""))
            ));
        }
    }
    for (canonical, _) in TRANSACTION_COLUMNS {
        if let Some(e) = sources
            .get(canonical)
            .and_then(|m| number_errors(canonical, m))
        {
            parts.push(e);
        }
    }
    for canonical in ["customer_id", "order_ts", "amount"] {
        if let Some(e) = sources
            .get(canonical)
            .and_then(|m| empty_operands(canonical, m))
        {
            parts.push(e);
        }
    }
    if let Some(e) = filter.and_then(|f| number_errors("where", f)) {
        parts.push(e);
    }
    match parts.len() {
        0 => "CAST(NULL AS VARCHAR) AS parse_error".into(),
        1 => format!("{} AS parse_error", parts[0]),
        _ => format!("COALESCE({}) AS parse_error", parts.join(", ")),
    }
}

/// The text `rejected_rows` shows for a canonical column: the raw value, or
/// for an expression the raw values it reads (`Quantity=6; UnitPrice=2.5`,
/// `UnitPrice=` where one is missing, NULL when all are).
fn raw_text(m: Option<&Mapped>) -> String {
    match m {
        None => "CAST(NULL AS VARCHAR)".into(),
        Some(Mapped {
            expr: Some(e), sql, ..
        }) if e.columns.is_empty() => format!("CAST({sql} AS VARCHAR)"),
        Some(Mapped { expr: Some(e), .. }) => {
            // An empty operand shows as `UnitPrice=`; all empty is NULL.
            let parts: Vec<String> = e
                .columns
                .iter()
                .map(|c| {
                    format!(
                        "{} || coalesce(CAST({} AS VARCHAR), '')",
                        literal(&format!("{c}=")),
                        quote(c)
                    )
                })
                .collect();
            let all_null: Vec<String> = e
                .columns
                .iter()
                .map(|c| format!("{} IS NULL", quote(c)))
                .collect();
            format!(
                "CASE WHEN {} THEN NULL ELSE concat_ws('; ', {}) END",
                all_null.join(" AND "),
                parts.join(", ")
            )
        }
        Some(m) => format!("CAST({} AS VARCHAR)", m.sql),
    }
}

/// A text column parsed as a number: with a decimal comma (`12,50`,
/// `-1.234,5`: `.` only between groups of three digits) when the input's
/// CSV dialect says so, NULL (a rejected row) for anything else, a decimal
/// point included (`12.50` would otherwise be read as 1250).
fn text_number(c: &str, decimal_comma: bool) -> String {
    if decimal_comma {
        decimal_comma_number(c)
    } else {
        format!("TRY_CAST(TRIM({c}) AS DOUBLE)")
    }
}

/// SQL parsing text column `c` written with a decimal comma as a DOUBLE;
/// NULL for anything else (see [`text_number`]).
fn decimal_comma_number(c: &str) -> String {
    format!(
        "CASE WHEN regexp_like(TRIM({c}), '^[+-]?([0-9]+|[0-9]{{1,3}}([.][0-9]{{3}})+)(,[0-9]+)?$') \
         THEN TRY_CAST(replace(replace(TRIM({c}), '.', ''), ',', '.') AS DOUBLE) END"
    )
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
