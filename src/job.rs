//! Job files: the TOML spec (unknown fields rejected), parameters and their
//! overrides, and the checks that run before the first query.
//!
//! A job names its inputs (URL, format, column mapping), typed parameters,
//! ordered SQL steps and the tables it publishes. Paths in a job file are
//! relative to the file itself.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use chrono::NaiveDate;
use datafusion::scalar::ScalarValue;
use serde::Deserialize;

use crate::error::{Error, Result};

/// The whole job file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobSpec {
    pub name: String,
    #[serde(default)]
    pub description: Option<String>,
    /// Default output URL; `--output` overrides it.
    #[serde(default)]
    pub output: Option<String>,
    #[serde(default)]
    pub inputs: BTreeMap<String, InputSpec>,
    /// Parameter defaults; the type of the default is the parameter's type.
    #[serde(default)]
    pub params: BTreeMap<String, toml::Value>,
    pub steps: Vec<StepSpec>,
    #[serde(default)]
    pub gates: Vec<GateSpec>,
    #[serde(default)]
    pub outputs: Vec<OutputSpec>,
}

/// What an input holds decides which canonical columns it must map.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InputKind {
    /// customer_id, order_ts, amount [, order_id, category, margin, peer_group]:
    /// validated row by row; bad rows go to `rejected_rows`.
    Transactions,
    /// Any table, registered as it is after renaming the mapped columns.
    Table,
}

/// File format of an input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Format {
    Parquet,
    Csv,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InputSpec {
    pub kind: InputKind,
    /// Default URL; `--input NAME=URL` overrides it.
    #[serde(default)]
    pub url: Option<String>,
    /// Guessed from the URL's extension when absent (Parquet otherwise).
    #[serde(default)]
    pub format: Option<Format>,
    /// An optional input that is absent is registered empty with the
    /// canonical columns of its kind.
    #[serde(default = "yes")]
    pub required: bool,
    /// canonical name -> the user's column name.
    #[serde(default)]
    pub columns: BTreeMap<String, String>,
    /// For `table` inputs: canonical columns and their SQL types, used for the
    /// empty table when the input is optional and absent.
    #[serde(default)]
    pub schema: BTreeMap<String, String>,
}

fn yes() -> bool {
    true
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StepSpec {
    /// The logical table the step defines.
    pub name: String,
    /// Path of the SQL file, relative to the job file.
    pub sql: String,
    /// Compute once into a local spill file instead of a lazily planned view:
    /// for steps read several times (the RFM summary, the model fits).
    #[serde(default)]
    pub materialize: bool,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GateSpec {
    pub name: String,
    /// A query returning one row per violation, with a column `message`.
    pub sql: String,
    /// Run the gate as soon as this step is computed (default: after all steps),
    /// so a failing gate stops the run before the expensive steps.
    #[serde(default)]
    pub after: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutputSpec {
    /// Published table name: `OUTPUT/<table>/as_of=YYYY-MM-DD/`.
    pub table: String,
    /// The step (logical table) whose rows are published.
    pub from: String,
    /// Columns of the latest partition published before this as-of date,
    /// registered as `previous_<table>` (all text; empty when there is none).
    #[serde(default)]
    pub previous: Vec<String>,
}

/// A job loaded from disk, with its SQL files read and parameters typed.
#[derive(Debug, Clone)]
pub struct Job {
    pub path: PathBuf,
    pub spec: JobSpec,
    /// SQL text of each step and gate, keyed by file as written in the job.
    pub sql: BTreeMap<String, String>,
    pub params: BTreeMap<String, Param>,
}

/// A typed parameter value. Reaches SQL as a placeholder `$name` bound to a
/// typed literal, never pasted into the SQL text.
#[derive(Debug, Clone, PartialEq)]
pub enum Param {
    Int(i64),
    Float(f64),
    Bool(bool),
    Date(NaiveDate),
    Str(String),
}

impl Param {
    pub fn to_scalar(&self) -> ScalarValue {
        match self {
            Param::Int(v) => ScalarValue::Int64(Some(*v)),
            Param::Float(v) => ScalarValue::Float64(Some(*v)),
            Param::Bool(v) => ScalarValue::Boolean(Some(*v)),
            Param::Date(d) => {
                let epoch = NaiveDate::from_ymd_opt(1970, 1, 1).unwrap_or_default();
                ScalarValue::Date32(Some((*d - epoch).num_days() as i32))
            }
            Param::Str(s) => ScalarValue::Utf8(Some(s.clone())),
        }
    }

    pub fn to_json(&self) -> serde_json::Value {
        match self {
            Param::Int(v) => (*v).into(),
            Param::Float(v) => (*v).into(),
            Param::Bool(v) => (*v).into(),
            Param::Date(d) => d.to_string().into(),
            Param::Str(s) => s.clone().into(),
        }
    }

    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Param::Int(v) => Some(*v as f64),
            Param::Float(v) => Some(*v),
            _ => None,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Param::Str(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_bool(&self) -> Option<bool> {
        match self {
            Param::Bool(b) => Some(*b),
            _ => None,
        }
    }

    /// Parse an override in the type of the default it replaces.
    fn parse_like(&self, raw: &str) -> std::result::Result<Param, String> {
        let raw = raw.trim();
        match self {
            Param::Int(_) => raw
                .parse()
                .map(Param::Int)
                .map_err(|_| format!("expected an integer, got {raw:?}")),
            Param::Float(_) => raw
                .parse::<f64>()
                .ok()
                .filter(|v| v.is_finite())
                .map(Param::Float)
                .ok_or_else(|| format!("expected a finite number, got {raw:?}")),
            Param::Bool(_) => raw
                .parse()
                .map(Param::Bool)
                .map_err(|_| format!("expected true or false, got {raw:?}")),
            Param::Date(_) => parse_date(raw).map(Param::Date),
            Param::Str(_) => Ok(Param::Str(raw.to_string())),
        }
    }

    fn from_toml(value: &toml::Value) -> std::result::Result<Param, String> {
        match value {
            toml::Value::Integer(v) => Ok(Param::Int(*v)),
            toml::Value::Float(v) => Ok(Param::Float(*v)),
            toml::Value::Boolean(v) => Ok(Param::Bool(*v)),
            toml::Value::String(s) => Ok(Param::Str(s.clone())),
            toml::Value::Datetime(d) => parse_date(&d.to_string()).map(Param::Date),
            other => Err(format!(
                "unsupported parameter type {} (use a number, string, boolean or date)",
                other.type_str()
            )),
        }
    }
}

/// Parse `YYYY-MM-DD`.
pub fn parse_date(raw: &str) -> std::result::Result<NaiveDate, String> {
    NaiveDate::parse_from_str(raw.trim(), "%Y-%m-%d")
        .map_err(|_| format!("expected a date YYYY-MM-DD, got {raw:?}"))
}

/// Parameter names the runner sets itself; a job may not declare them.
pub const BUILTIN_PARAMS: &[&str] = &[
    "as_of",
    "as_of_day",
    "time_unit_days",
    "time_units_per_month",
    "calibration_end",
    "calibration_end_day",
];

impl Job {
    /// Load a job file from disk and read every SQL file it names.
    pub fn load(path: &Path) -> Result<Job> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        let base = path.parent().unwrap_or_else(|| Path::new("."));
        Self::parse(path, &text, |file| {
            let p = base.join(file);
            std::fs::read_to_string(&p)
                .map_err(|e| Error::job(path, format!("{}: {e}", p.display())))
        })
    }

    /// Parse a job from text; `read_sql` resolves the SQL files it names.
    pub fn parse(
        path: &Path,
        text: &str,
        mut read_sql: impl FnMut(&str) -> Result<String>,
    ) -> Result<Job> {
        let spec: JobSpec = toml::from_str(text).map_err(|e| Error::job(path, e.to_string()))?;
        let mut params = BTreeMap::new();
        for (name, value) in &spec.params {
            if BUILTIN_PARAMS.contains(&name.as_str()) {
                return Err(Error::job(
                    path,
                    format!("parameter {name} is set by custval itself"),
                ));
            }
            let p = Param::from_toml(value)
                .map_err(|m| Error::job(path, format!("parameter {name}: {m}")))?;
            params.insert(name.clone(), p);
        }
        let mut sql = BTreeMap::new();
        let mut names = std::collections::BTreeSet::new();
        for input in spec.inputs.keys() {
            check_identifier(path, "input", input)?;
            names.insert(input.clone());
        }
        for step in &spec.steps {
            check_identifier(path, "step", &step.name)?;
            if !names.insert(step.name.clone()) {
                return Err(Error::job(
                    path,
                    format!("step {} is defined twice", step.name),
                ));
            }
            if !sql.contains_key(&step.sql) {
                sql.insert(step.sql.clone(), read_sql(&step.sql)?);
            }
        }
        for gate in &spec.gates {
            if let Some(after) = &gate.after {
                if !spec.steps.iter().any(|s| &s.name == after) {
                    return Err(Error::job(
                        path,
                        format!(
                            "gate {} runs after step {after}, which the job does not define",
                            gate.name
                        ),
                    ));
                }
            }
            if !sql.contains_key(&gate.sql) {
                sql.insert(gate.sql.clone(), read_sql(&gate.sql)?);
            }
        }
        let mut tables = std::collections::BTreeSet::new();
        for out in &spec.outputs {
            check_identifier(path, "output table", &out.table)?;
            if !tables.insert(out.table.clone()) {
                return Err(Error::job(
                    path,
                    format!("output table {} is listed twice", out.table),
                ));
            }
            if !spec.steps.iter().any(|s| s.name == out.from) {
                return Err(Error::job(
                    path,
                    format!(
                        "output {} reads step {}, which the job does not define",
                        out.table, out.from
                    ),
                ));
            }
        }
        Ok(Job {
            path: path.to_path_buf(),
            spec,
            sql,
            params,
        })
    }

    /// Apply `--set KEY=VALUE` overrides, typed like the declared default.
    pub fn apply_overrides(&mut self, sets: &[(String, String)]) -> Result<()> {
        for (key, raw) in sets {
            let current = self.params.get(key).ok_or_else(|| {
                let known: Vec<_> = self.params.keys().cloned().collect();
                Error::Usage(format!(
                    "--set {key}: the job declares no parameter {key} (known: {})",
                    known.join(", ")
                ))
            })?;
            let value = current
                .parse_like(raw)
                .map_err(|m| Error::Usage(format!("--set {key}={raw}: {m}")))?;
            self.params.insert(key.clone(), value);
        }
        Ok(())
    }
}

fn check_identifier(path: &Path, what: &str, name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && !name.starts_with(|c: char| c.is_ascii_digit());
    if ok {
        Ok(())
    } else {
        Err(Error::job(
            path,
            format!("{what} name {name:?} must be lower-case letters, digits and underscores"),
        ))
    }
}

/// Split `NAME=VALUE` arguments.
pub fn parse_key_value(flag: &str, raw: &str) -> Result<(String, String)> {
    match raw.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_string(), v.to_string())),
        _ => Err(Error::Usage(format!(
            "{flag} expects NAME=VALUE, got {raw:?}"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Job> {
        Job::parse(Path::new("t.toml"), text, |_| Ok("SELECT 1".to_string()))
    }

    const MINIMAL: &str = r#"
name = "t"
[params]
horizon_months = 12
rate = 0.01
time_unit = "week"
[[steps]]
name = "a"
sql = "a.sql"
[[outputs]]
table = "out_a"
from = "a"
"#;

    #[test]
    fn unknown_fields_are_rejected() {
        let err = parse(&format!("{MINIMAL}\nbogus = 1\n")).unwrap_err();
        assert_eq!(err.exit_code(), 2);
        assert!(err.to_string().contains("bogus"), "{err}");
    }

    #[test]
    fn overrides_keep_the_declared_type() {
        let mut job = parse(MINIMAL).unwrap();
        job.apply_overrides(&[("horizon_months".into(), "6".into())])
            .unwrap();
        assert_eq!(job.params["horizon_months"], Param::Int(6));
        let err = job
            .apply_overrides(&[("horizon_months".into(), "six".into())])
            .unwrap_err();
        assert!(err.to_string().contains("horizon_months"), "{err}");
        let err = job
            .apply_overrides(&[("nope".into(), "1".into())])
            .unwrap_err();
        assert_eq!(err.exit_code(), 2);
    }

    #[test]
    fn output_must_read_a_defined_step() {
        let text = MINIMAL.replace("from = \"a\"", "from = \"b\"");
        let err = parse(&text).unwrap_err();
        assert!(err.to_string().contains("step b"), "{err}");
    }

    #[test]
    fn builtin_parameters_cannot_be_declared() {
        let text = MINIMAL.replace("rate = 0.01", "as_of = 2020-01-01");
        assert!(parse(&text).is_err());
    }
}
