//! The column mapping of an input, resolved against its real schema: each
//! canonical column is a raw column (named exactly, or case-insensitively
//! when only one raw column matches) or a SQL expression over the raw
//! columns, whose identifiers resolve the same way; and the optional row
//! filter (`where`), an expression too. Unknown or ambiguous names are
//! [`Error::InputSchema`] naming the input, the canonical column, the name
//! and the columns the input has.

use std::collections::BTreeMap;
use std::ops::ControlFlow;

use datafusion::arrow::datatypes::Schema;
use datafusion::sql::sqlparser::ast::{
    visit_expressions_mut, BinaryOperator, Expr, Ident, UnaryOperator, Value,
};
use datafusion::sql::sqlparser::dialect::GenericDialect;
use datafusion::sql::sqlparser::parser::Parser;
use datafusion::sql::sqlparser::tokenizer::Token;

use crate::error::{Error, Result};

/// What a canonical column (or the filter) is read from.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Source {
    /// A raw column, by its exact name in the input's schema.
    Column(String),
    /// A SQL expression over raw columns.
    Expr(Expression),
}

/// A SQL expression of a mapping, its identifiers resolved to raw columns.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Expression {
    /// The expression as the job writes it.
    pub written: String,
    /// The parsed expression, each raw column a double-quoted identifier
    /// with its exact name (boxed: a parsed expression is large).
    ast: Box<Expr>,
    /// The raw columns it reads, exact names, in order of first use.
    pub columns: Vec<String>,
    /// The raw columns it uses as numbers: operands of arithmetic, or
    /// compared with a number (`Quantity * UnitPrice`, `Quantity > 0`).
    pub in_arithmetic: Vec<String>,
}

impl Expression {
    /// The expression as SQL, each raw column replaced by `column(name)`
    /// (itself SQL: the quoted name, or a parse of its text).
    ///
    /// Errors: [`Error::Internal`] when a replacement does not parse.
    pub fn sql_with(&self, column: impl Fn(&str) -> String) -> Result<String> {
        let mut ast = (*self.ast).clone();
        let mut failed = None;
        let _ = visit_expressions_mut(&mut ast, |e| {
            if let Expr::Identifier(id) = e {
                let text = column(&id.value);
                match parse_expr(&text) {
                    Ok(sub) => *e = Expr::Nested(Box::new(sub)),
                    Err(m) => failed = Some(format!("{text}: {m}")),
                }
            }
            ControlFlow::<()>::Continue(())
        });
        match failed {
            Some(m) => Err(Error::Internal(format!("mapping substitution: {m}"))),
            None => Ok(format!("({ast})")),
        }
    }
}

/// An input's mapping resolved against its schema.
#[derive(Debug, Clone, Default)]
pub(super) struct Mapping {
    /// canonical column -> its source, for the canonical columns the job
    /// maps and the ones found under their own name.
    pub columns: BTreeMap<String, Source>,
    /// The `where` filter, when the job gives one.
    pub filter: Option<Expression>,
}

impl Mapping {
    /// Every raw column the canonical columns in `canonical` read.
    pub fn raw_columns(&self, canonical: &str) -> Vec<&str> {
        match self.columns.get(canonical) {
            Some(Source::Column(c)) => vec![c.as_str()],
            Some(Source::Expr(e)) => e.columns.iter().map(|s| s.as_str()).collect(),
            None => vec![],
        }
    }
}

/// Where a mapping is resolved, for error messages.
pub(super) struct Context<'a> {
    /// The input's name in the job.
    pub input: &'a str,
    /// Its redacted URL.
    pub url: &'a str,
    /// Its schema: the union of its files' columns.
    pub schema: &'a Schema,
}

impl Context<'_> {
    fn error(&self, message: String) -> Error {
        Error::InputSchema {
            input: self.input.to_string(),
            url: self.url.to_string(),
            message,
        }
    }

    /// The input's columns, comma-separated, for messages.
    pub fn available(&self) -> String {
        let names: Vec<&str> = self
            .schema
            .fields()
            .iter()
            .map(|f| f.name().as_str())
            .collect();
        names.join(", ")
    }

    /// The raw column `name` means: the exact name, else the one column
    /// equal to it ignoring case. `Ok(None)` when none matches.
    fn lookup(&self, name: &str) -> std::result::Result<Option<String>, Vec<String>> {
        if self.schema.field_with_name(name).is_ok() {
            return Ok(Some(name.to_string()));
        }
        let matches: Vec<String> = self
            .schema
            .fields()
            .iter()
            .filter(|f| f.name().to_lowercase() == name.to_lowercase())
            .map(|f| f.name().clone())
            .collect();
        match matches.len() {
            0 => Ok(None),
            1 => Ok(matches.into_iter().next()),
            _ => Err(matches),
        }
    }

    /// The raw column named `name`, exactly or ignoring case when only one
    /// matches; `None` otherwise.
    pub fn lookup_column(&self, name: &str) -> Option<String> {
        self.lookup(name).ok().flatten()
    }

    /// Resolve one mapping value for `canonical` (`"where"` for the filter).
    pub fn resolve(&self, canonical: &str, value: &str) -> Result<Source> {
        match self.lookup(value) {
            Ok(Some(name)) => return Ok(Source::Column(name)),
            Ok(None) => {}
            Err(many) => {
                return Err(self.error(format!(
                    "{canonical} = {value:?}: the name matches several columns when case is ignored ({}); write the exact one",
                    many.join(", ")
                )))
            }
        }
        let ast = parse_expr(value).map_err(|m| {
            self.error(format!(
                "{canonical} = {value:?} is neither a column of the input nor a SQL expression ({m}); the input has: {}",
                self.available()
            ))
        })?;
        self.resolve_expr(canonical, value, ast).map(Source::Expr)
    }

    /// The filter: always an expression (a bare column is a boolean one).
    pub fn resolve_filter(&self, value: &str) -> Result<Expression> {
        let ast = parse_expr(value)
            .map_err(|m| self.error(format!("where = {value:?} is not a SQL expression: {m}")))?;
        self.resolve_expr("where", value, ast)
    }

    fn resolve_expr(&self, canonical: &str, value: &str, mut ast: Expr) -> Result<Expression> {
        let mut columns: Vec<String> = Vec::new();
        let mut in_arithmetic: Vec<String> = Vec::new();
        let mut problem: Option<String> = None;
        let _ = visit_expressions_mut(&mut ast, |e| {
            // Children are visited first: their identifiers are resolved.
            for name in numeric_operands(e) {
                if !in_arithmetic.contains(&name) {
                    in_arithmetic.push(name);
                }
            }
            let name = match e {
                Expr::Identifier(id) => id.value.clone(),
                Expr::CompoundIdentifier(parts) => {
                    let whole: Vec<&str> = parts.iter().map(|p| p.value.as_str()).collect();
                    problem.get_or_insert(format!(
                        "{canonical} = {value:?}: {:?} is a qualified name; name raw columns alone (quote names with dots: \"a.b\")",
                        whole.join(".")
                    ));
                    return ControlFlow::Continue(());
                }
                _ => return ControlFlow::Continue(()),
            };
            match self.lookup(&name) {
                Ok(Some(exact)) => {
                    if !columns.contains(&exact) {
                        columns.push(exact.clone());
                    }
                    *e = Expr::Identifier(Ident::with_quote('"', exact));
                }
                Ok(None) => {
                    problem.get_or_insert(format!(
                        "{canonical} = {value:?}: unknown column {name:?}; the input has: {}",
                        self.available()
                    ));
                }
                Err(many) => {
                    problem.get_or_insert(format!(
                        "{canonical} = {value:?}: {name:?} matches several columns when case is ignored ({}); quote the exact one",
                        many.join(", ")
                    ));
                }
            }
            ControlFlow::<()>::Continue(())
        });
        match problem {
            Some(m) => Err(self.error(m)),
            None => Ok(Expression {
                written: value.to_string(),
                ast: Box::new(ast),
                columns,
                in_arithmetic,
            }),
        }
    }
}

/// The columns `e` uses as numbers directly: the operands of `+ - * / %`
/// and of a sign, and a column compared with a number literal.
fn numeric_operands(e: &Expr) -> Vec<String> {
    fn column(e: &Expr) -> Option<&str> {
        match e {
            Expr::Identifier(id) => Some(&id.value),
            Expr::Nested(inner) => column(inner),
            _ => None,
        }
    }
    fn number(e: &Expr) -> bool {
        match e {
            Expr::Value(v) => matches!(v.value, Value::Number(..)),
            Expr::Nested(inner) => number(inner),
            Expr::UnaryOp { expr, .. } => number(expr),
            _ => false,
        }
    }
    use BinaryOperator as B;
    let operands: Vec<&Expr> = match e {
        Expr::BinaryOp { left, op, right } => match op {
            B::Plus | B::Minus | B::Multiply | B::Divide | B::Modulo => vec![left, right],
            B::Gt | B::Lt | B::GtEq | B::LtEq | B::Eq | B::NotEq => {
                let mut v: Vec<&Expr> = Vec::new();
                if number(right) {
                    v.push(left);
                }
                if number(left) {
                    v.push(right);
                }
                v
            }
            _ => vec![],
        },
        Expr::UnaryOp {
            op: UnaryOperator::Minus | UnaryOperator::Plus,
            expr,
        } => vec![expr],
        _ => vec![],
    };
    operands
        .into_iter()
        .filter_map(column)
        .map(str::to_string)
        .collect()
}

/// Parse one whole SQL expression (DataFusion's generic dialect).
fn parse_expr(text: &str) -> std::result::Result<Expr, String> {
    let dialect = GenericDialect {};
    let mut parser = Parser::new(&dialect)
        .try_with_sql(text)
        .map_err(|e| e.to_string())?;
    let expr = parser.parse_expr().map_err(|e| e.to_string())?;
    let next = parser.peek_token();
    if next.token != Token::EOF {
        return Err(format!("unexpected {} after the expression", next.token));
    }
    Ok(expr)
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::datatypes::{DataType, Field};

    fn schema(names: &[&str]) -> Schema {
        Schema::new(
            names
                .iter()
                .map(|n| Field::new(*n, DataType::Utf8, true))
                .collect::<Vec<_>>(),
        )
    }

    fn ctx(s: &Schema) -> Context<'_> {
        Context {
            input: "transactions",
            url: "file:///x.csv",
            schema: s,
        }
    }

    fn expr(src: Source) -> Expression {
        match src {
            Source::Expr(e) => e,
            other => panic!("expected an expression, got {other:?}"),
        }
    }

    #[test]
    fn a_raw_column_name_is_a_name_exactly_or_ignoring_case() {
        let s = schema(&["InvoiceNo", "Customer ID", "amount"]);
        let c = ctx(&s);
        assert_eq!(
            c.resolve("order_id", "InvoiceNo").unwrap(),
            Source::Column("InvoiceNo".into())
        );
        assert_eq!(
            c.resolve("order_id", "invoiceno").unwrap(),
            Source::Column("InvoiceNo".into())
        );
        // A name with a space is a name, not an expression to parse.
        assert_eq!(
            c.resolve("customer_id", "Customer ID").unwrap(),
            Source::Column("Customer ID".into())
        );
        assert_eq!(
            c.resolve("customer_id", "customer id").unwrap(),
            Source::Column("Customer ID".into())
        );
    }

    #[test]
    fn an_exact_name_wins_over_other_cases_and_ambiguity_is_an_error() {
        let s = schema(&["Amount", "amount", "AMOUNT"]);
        let c = ctx(&s);
        assert_eq!(
            c.resolve("amount", "AMOUNT").unwrap(),
            Source::Column("AMOUNT".into())
        );
        let e = c.resolve("amount", "aMoUnT").unwrap_err();
        assert_eq!(e.exit_code(), 2);
        let m = e.to_string();
        assert!(m.contains("several columns") && m.contains("Amount"), "{m}");
    }

    #[test]
    fn expressions_resolve_mixed_case_identifiers_to_quoted_exact_names() {
        let s = schema(&["Quantity", "UnitPrice", "Customer ID"]);
        let c = ctx(&s);
        let e = expr(c.resolve("amount", "quantity * UNITPRICE").unwrap());
        assert_eq!(e.columns, vec!["Quantity", "UnitPrice"]);
        assert_eq!(
            e.sql_with(|n| format!("\"{n}\"")).unwrap(),
            r#"(("Quantity") * ("UnitPrice"))"#
        );
        // Each column is replaced by the SQL the caller gives for it.
        assert_eq!(
            e.sql_with(|n| format!("TRY_CAST(\"{n}\" AS DOUBLE)"))
                .unwrap(),
            r#"((TRY_CAST("Quantity" AS DOUBLE)) * (TRY_CAST("UnitPrice" AS DOUBLE)))"#
        );
        assert_eq!(e.in_arithmetic, vec!["Quantity", "UnitPrice"]);
        let e = expr(c.resolve("customer_id", r#"lower("customer id")"#).unwrap());
        assert_eq!(e.columns, vec!["Customer ID"]);
        assert!(e.in_arithmetic.is_empty());
        // Compared with a number or signed, a column is used as a number;
        // compared with text, or returned as it is, it is not.
        let e = expr(
            c.resolve(
                "amount",
                r#"CASE WHEN "customer id" = 'x' AND quantity > 0 THEN -unitprice ELSE 0 END"#,
            )
            .unwrap(),
        );
        assert_eq!(e.in_arithmetic, vec!["Quantity", "UnitPrice"]);
    }

    #[test]
    fn an_unknown_column_names_the_input_canonical_column_and_what_exists() {
        let s = schema(&["Quantity", "UnitPrice"]);
        let c = ctx(&s);
        let e = c.resolve("amount", "Qty * UnitPrice").unwrap_err();
        assert_eq!(e.exit_code(), 2);
        let m = e.to_string();
        for part in ["transactions", "amount", "\"Qty\"", "Quantity, UnitPrice"] {
            assert!(m.contains(part), "{part} missing from: {m}");
        }
        // A bare unknown name is reported the same way.
        let m = c.resolve("customer_id", "cust_no").unwrap_err().to_string();
        assert!(m.contains("unknown column \"cust_no\""), "{m}");
        // Text that is no expression at all.
        let m = c.resolve("amount", "Quantity *").unwrap_err().to_string();
        assert!(
            m.contains("neither a column") && m.contains("Quantity, UnitPrice"),
            "{m}"
        );
    }

    #[test]
    fn the_filter_is_an_expression_over_raw_columns() {
        let s = schema(&["Country", "Quantity"]);
        let c = ctx(&s);
        let f = c.resolve_filter("country <> 'Internal'").unwrap();
        assert_eq!(f.columns, vec!["Country"]);
        assert_eq!(
            f.sql_with(|n| format!("\"{n}\"")).unwrap(),
            r#"(("Country") <> 'Internal')"#
        );
        let m = c.resolve_filter("Region = 'EU'").unwrap_err().to_string();
        assert!(m.contains("where") && m.contains("\"Region\""), "{m}");
        let m = c.resolve_filter("a.Country = 'x'").unwrap_err().to_string();
        assert!(m.contains("qualified"), "{m}");
    }
}
