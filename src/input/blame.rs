//! Blaming a failed computation on the job's mapping: when a step fails on
//! a value (a cast, a parse, a division), each mapping expression of each
//! input is computed alone over its raw rows; the first that fails the same
//! way is the user's input or job error ([`Error::MappingValue`], exit 2,
//! naming the input, the canonical column, the expression and the value),
//! not a failed run to retry.

use datafusion::prelude::SessionContext;

use super::source::first_line;
use super::{quote, InputReport};
use crate::error::{is_value_fault, Error};

/// One expression of a job's mapping as the input's view computes it.
#[derive(Debug, Clone)]
pub struct MappedExpression {
    /// The canonical column it computes, or `where` for the filter.
    pub canonical: String,
    /// The expression as the job writes it.
    pub written: String,
    /// Its SQL over the raw table `__raw_NAME`.
    pub sql: String,
}

/// `e`, or [`Error::MappingValue`] when `e` is an engine error about a value
/// ([`is_value_fault`]) and one of the inputs' mapping expressions, computed
/// alone over the input's raw rows, fails on a value too. Costs one scan of
/// an input per expression, on the failure path only.
pub async fn blame_mapping(ctx: &SessionContext, inputs: &[InputReport], e: Error) -> Error {
    let source = match &e {
        Error::Step { source, .. } | Error::DataFusion(source) => source,
        _ => return e,
    };
    if !is_value_fault(source) {
        return e;
    }
    for input in inputs {
        for m in &input.expressions {
            let raw = quote(&format!("__raw_{}", input.name));
            let computed = async {
                ctx.sql(&format!("SELECT count({}) FROM {raw}", m.sql))
                    .await?
                    .collect()
                    .await
            };
            if let Err(failed) = computed.await {
                if is_value_fault(&failed) {
                    return Error::MappingValue {
                        input: input.name.clone(),
                        url: input.url.clone().unwrap_or_default(),
                        column: m.canonical.clone(),
                        expression: m.written.clone(),
                        message: explain(&first_line(&failed.to_string()), m),
                    };
                }
            }
        }
    }
    e
}

/// The engine's message, with a hint when the value is epoch seconds or
/// milliseconds written as text given to `to_timestamp`.
fn explain(message: &str, m: &MappedExpression) -> String {
    let quoted = message
        .split('\'')
        .nth(1)
        .filter(|v| !v.is_empty() && v.chars().all(|c| c.is_ascii_digit()));
    match quoted {
        Some(v) if m.written.to_lowercase().contains("to_timestamp") => format!(
            "{message}; {v:?} looks like epoch seconds written as text: read it as a number, to_timestamp(CAST(column AS BIGINT)) (to_timestamp_millis for milliseconds)"
        ),
        _ => message.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn epoch_text_given_to_to_timestamp_gets_a_hint_and_other_messages_do_not() {
        let m = MappedExpression {
            canonical: "order_ts".into(),
            written: "to_timestamp(created)".into(),
            sql: String::new(),
        };
        let msg = "Arrow error: Parser error: Error parsing timestamp from '1694188088'";
        let got = explain(msg, &m);
        assert!(got.starts_with(msg), "{got}");
        assert!(
            got.contains("to_timestamp(CAST(column AS BIGINT))"),
            "{got}"
        );
        let other = "Arrow error: Parser error: Error parsing timestamp from 'yesterday'";
        assert_eq!(explain(other, &m), other);
    }
}
