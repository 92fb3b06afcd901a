//! Job files: the TOML spec (unknown fields rejected), parameters and their
//! overrides, and binding a job to an as-of date ([`Job::bind`]): the checked,
//! typed parameters its SQL sees, with the ones custval derives.
//!
//! A job names its inputs (URL, format, column mapping), typed parameters,
//! ordered SQL steps and the tables it publishes. Paths in a job file are
//! relative to the file itself.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use chrono::NaiveDate;
use datafusion::scalar::ScalarValue;
use serde::Deserialize;

use crate::error::{Error, Result};

/// The whole job file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobSpec {
    /// The job's name: in lock, report and manifest paths and in lineage.
    pub name: String,
    /// Free text for people.
    #[serde(default)]
    pub description: Option<String>,
    /// Default output URL; `--output` overrides it.
    #[serde(default)]
    pub output: Option<String>,
    /// Inputs by name; each becomes a table the steps read.
    #[serde(default)]
    pub inputs: BTreeMap<String, InputSpec>,
    /// Parameter defaults; the type of the default is the parameter's type.
    #[serde(default)]
    pub params: BTreeMap<String, toml::Value>,
    /// SQL steps, run in order; each defines a logical table.
    pub steps: Vec<StepSpec>,
    /// Data-quality gates (exit 3 when one finds violations).
    #[serde(default)]
    pub gates: Vec<GateSpec>,
    /// Tables to publish.
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
    /// Apache Parquet.
    Parquet,
    /// CSV with a header line.
    Csv,
}

/// One input: where it is, its format and its column mapping.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InputSpec {
    /// What the input holds.
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
    /// canonical name -> the user's column name (matched exactly, or
    /// ignoring case when only one column matches) or a SQL expression over
    /// the user's columns (`amount = "Quantity * UnitPrice"`).
    #[serde(default)]
    pub columns: BTreeMap<String, String>,
    /// chrono strftime formats of a text `order_ts`, tried in order
    /// (`"%m/%d/%Y %H:%M"` or a list); empty: ISO 8601 dates and timestamps.
    #[serde(default, deserialize_with = "one_or_many")]
    pub timestamp_format: Vec<String>,
    /// A SQL condition over the user's columns; rows where it is not true
    /// are left out (counted as filtered, not rejected).
    #[serde(default, rename = "where")]
    pub filter: Option<String>,
    /// For `table` inputs: canonical columns and their SQL types, used for the
    /// empty table when the input is optional and absent.
    #[serde(default)]
    pub schema: BTreeMap<String, String>,
    /// How the input's CSV files are written (`[inputs.NAME.csv]`); also
    /// set from the command line with `--csv NAME.OPTION=VALUE`.
    #[serde(default)]
    pub csv: CsvSpec,
}

/// The CSV dialect of an input as the job file or `--csv NAME.OPTION=VALUE`
/// writes it: every option as written, checked when the input is read
/// (`input::CsvOptions`), so an error can name the input, the option and
/// the value. Absent options take the defaults of a plain UTF-8 CSV with a
/// header.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CsvSpec {
    /// One ASCII character, or `tab` / `\t`; default `,` (`;` with `decimal = ","`).
    #[serde(default)]
    pub delimiter: Option<String>,
    /// One ASCII character; default `"`.
    #[serde(default)]
    pub quote: Option<String>,
    /// One ASCII character escaping a quote inside a quoted value; default
    /// none (a quote is doubled).
    #[serde(default)]
    pub escape: Option<String>,
    /// Whether the first line names the columns; default true.
    #[serde(default)]
    pub header: Option<bool>,
    /// Column names of files without a header, in file order; without them
    /// the columns are `column_1` .. `column_N`.
    #[serde(default)]
    pub names: Option<Vec<String>>,
    /// Decimal separator of amounts: `.` (default) or `,`.
    #[serde(default)]
    pub decimal: Option<String>,
    /// Character encoding: `utf-8` (default), `latin-1`, `windows-1252`,
    /// `utf-16` (`utf-16le`, `utf-16be`) or any WHATWG label.
    #[serde(default)]
    pub encoding: Option<String>,
    /// `gzip`, `zstd`, `bzip2`, `xz` or `none`; default: by each file's
    /// extension (`.gz`, `.zst`, `.bz2`, `.xz`).
    #[serde(default)]
    pub compression: Option<String>,
    /// Whether quoted values may hold newlines (default true: each file is
    /// then parsed whole by one core; false lets a large file be split).
    #[serde(default)]
    pub newlines_in_values: Option<bool>,
}

impl CsvSpec {
    /// The option names, as the job file and `--csv` spell them.
    pub const OPTIONS: &'static [&'static str] = &[
        "delimiter",
        "quote",
        "escape",
        "header",
        "names",
        "decimal",
        "encoding",
        "compression",
        "newlines_in_values",
    ];

    /// Set one option from its text (`--csv NAME.OPTION=VALUE`): booleans
    /// are `true`/`false`, `names` is comma-separated. The error message
    /// names the option and the value.
    pub fn set(&mut self, option: &str, value: &str) -> std::result::Result<(), String> {
        let flag = |v: &str| match v.trim().to_ascii_lowercase().as_str() {
            "true" | "yes" | "1" => Ok(true),
            "false" | "no" | "0" => Ok(false),
            _ => Err(format!("{option} must be true or false, got {v:?}")),
        };
        let text = Some(value.to_string());
        match option {
            "delimiter" => self.delimiter = text,
            "quote" => self.quote = text,
            "escape" => self.escape = text,
            "decimal" => self.decimal = text,
            "encoding" => self.encoding = text,
            "compression" => self.compression = text,
            "header" => self.header = Some(flag(value)?),
            "newlines_in_values" => self.newlines_in_values = Some(flag(value)?),
            "names" => self.names = Some(value.split(',').map(|n| n.trim().to_string()).collect()),
            other => {
                return Err(format!(
                    "unknown CSV option {other:?} (options: {})",
                    Self::OPTIONS.join(", ")
                ))
            }
        }
        Ok(())
    }
}

/// `--csv NAME.OPTION=VALUE` flags (already split at `=`) applied to
/// `specs`, the CSV options by input or table name. `known` says whether a
/// name exists; `what` names it in messages (`input`, `table`).
///
/// Errors: [`Error::Argument`] naming the flag for an unknown name or option
/// or a boolean that is neither true nor false.
pub fn apply_csv_flags(
    specs: &mut BTreeMap<String, CsvSpec>,
    flags: &[(String, String)],
    what: &str,
    known: &dyn Fn(&str) -> bool,
) -> Result<()> {
    for (key, value) in flags {
        let Some((name, option)) = key.split_once('.') else {
            return Err(Error::Argument(format!(
                "--csv {key}={value}: expected NAME.OPTION=VALUE, e.g. transactions.delimiter=;"
            )));
        };
        if !known(name) {
            return Err(Error::Argument(format!(
                "--csv {key}={value}: there is no {what} {name}"
            )));
        }
        specs
            .entry(name.to_string())
            .or_default()
            .set(option, value)
            .map_err(|m| Error::Argument(format!("--csv {key}={value}: {m}")))?;
    }
    Ok(())
}

fn yes() -> bool {
    true
}

/// A string or a list of strings, as a list.
fn one_or_many<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> std::result::Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }
    Ok(match OneOrMany::deserialize(d)? {
        OneOrMany::One(s) => vec![s],
        OneOrMany::Many(v) => v,
    })
}

/// One SQL step.
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

/// A data-quality gate.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GateSpec {
    /// The gate's name, in its failure message.
    pub name: String,
    /// A query returning one row per violation, with a column `message`.
    pub sql: String,
    /// Run the gate as soon as this step is computed (default: after all steps),
    /// so a failing gate stops the run before the expensive steps.
    #[serde(default)]
    pub after: Option<String>,
}

/// One published table.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutputSpec {
    /// Published table name: one partition per as-of date below
    /// `OUTPUT/<table>/` ([`crate::publish::OutputLayout::partition`]).
    pub table: String,
    /// The step (logical table) whose rows are published.
    pub from: String,
    /// Columns of the latest partition published before this as-of date,
    /// registered as `previous_<table>` (all text; empty when there is none).
    #[serde(default)]
    pub previous: Vec<String>,
    /// How the table is published: `parquet` (the default: Parquet files
    /// and a `_manifest.json` per as-of partition) or `delta` (a Delta Lake
    /// table partitioned by `as_of`, [`crate::publish::delta`]).
    /// `custval run --output-format` overrides it for every output.
    #[serde(default)]
    pub format: OutputFormat,
}

/// How an output is published.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum OutputFormat {
    /// Parquet files per as-of partition with a manifest, committed with
    /// the run's other tables by one run record.
    #[default]
    Parquet,
    /// A Delta Lake table at `OUTPUT/<table>/`, partitioned by `as_of`,
    /// each run replacing its date's partition in one Delta commit.
    Delta,
}

/// A job loaded from disk, with its SQL files read and parameters typed.
#[derive(Debug, Clone)]
pub struct Job {
    /// The job file; SQL files and relative URLs are relative to it.
    pub path: PathBuf,
    /// The parsed job file.
    pub spec: JobSpec,
    /// SQL text of each step and gate, keyed by file as written in the job.
    pub sql: BTreeMap<String, String>,
    /// The job's parameters, typed by their defaults, after `--set`.
    pub params: BTreeMap<String, Param>,
}

/// A typed parameter value. Reaches SQL as a placeholder `$name` bound to a
/// typed literal, never pasted into the SQL text. Displays as written in a
/// job file: `6`, `0.01`, `true`, `2024-01-31`, `"week"`.
#[derive(Debug, Clone, PartialEq)]
pub enum Param {
    /// A TOML integer: SQL BIGINT.
    Int(i64),
    /// A TOML float: SQL DOUBLE.
    Float(f64),
    /// A TOML boolean.
    Bool(bool),
    /// A TOML date: SQL DATE.
    Date(NaiveDate),
    /// A TOML string: SQL VARCHAR.
    Str(String),
}

impl std::fmt::Display for Param {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Param::Int(v) => write!(f, "{v}"),
            Param::Float(v) => write!(f, "{v}"),
            Param::Bool(v) => write!(f, "{v}"),
            Param::Date(d) => write!(f, "{d}"),
            Param::Str(s) => write!(f, "{s:?}"),
        }
    }
}

impl Param {
    /// The typed SQL literal: Int64, Float64, Boolean, Date32 or Utf8.
    pub fn to_scalar(&self) -> ScalarValue {
        match self {
            Param::Int(v) => ScalarValue::Int64(Some(*v)),
            Param::Float(v) => ScalarValue::Float64(Some(*v)),
            Param::Bool(v) => ScalarValue::Boolean(Some(*v)),
            Param::Date(d) => ScalarValue::Date32(Some(epoch_day(*d) as i32)),
            Param::Str(s) => ScalarValue::Utf8(Some(s.clone())),
        }
    }

    /// The value in the run report and manifests (dates as `YYYY-MM-DD`).
    pub fn to_json(&self) -> serde_json::Value {
        match self {
            Param::Int(v) => (*v).into(),
            Param::Float(v) => (*v).into(),
            Param::Bool(v) => (*v).into(),
            Param::Date(d) => d.to_string().into(),
            Param::Str(s) => s.clone().into(),
        }
    }

    /// A number (integer or float) as `f64`; `None` for other types.
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Param::Int(v) => Some(*v as f64),
            Param::Float(v) => Some(*v),
            _ => None,
        }
    }

    /// A string parameter's text; `None` for other types.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Param::Str(s) => Some(s),
            _ => None,
        }
    }

    /// A boolean parameter's value; `None` for other types.
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
            // A list of strings is its items comma-separated, as `--set`
            // gives it (`models = ["bgnbd", "pareto_nbd"]`).
            toml::Value::Array(items) => items
                .iter()
                .map(|v| v.as_str().map(str::to_string))
                .collect::<Option<Vec<String>>>()
                .map(|v| Param::Str(v.join(",")))
                .ok_or_else(|| "a list must hold strings only".to_string()),
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

/// Days since 1970-01-01: how dates reach SQL as numbers (`$as_of_day`).
pub fn epoch_day(date: NaiveDate) -> i64 {
    let epoch = NaiveDate::from_ymd_opt(1970, 1, 1).unwrap_or_default();
    (date - epoch).num_days()
}

/// The unit of recency, t and the BG/NBD alpha (parameter `time_unit`): the
/// one place that says how long a unit is and how many make a month.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeUnit {
    /// One day; a month is 30 of them ([`TimeUnit::per_month`]).
    Day,
    /// Seven days; a month is 4.345 of them ([`TimeUnit::per_month`]).
    Week,
}

impl TimeUnit {
    /// `day` or `week`, as a job writes it.
    pub fn parse(raw: &str) -> Option<TimeUnit> {
        match raw {
            "day" => Some(TimeUnit::Day),
            "week" => Some(TimeUnit::Week),
            _ => None,
        }
    }

    /// Days in one unit (`$time_unit_days`): 1 or 7.
    pub const fn days(self) -> f64 {
        match self {
            TimeUnit::Day => 1.0,
            TimeUnit::Week => 7.0,
        }
    }

    /// Units in one month (`$time_units_per_month`), the one home of the
    /// month's length: 30 days with `time_unit = day`, 4.345 weeks (30.415
    /// days) with `week`. These are the Python lifetimes package's factors
    /// (`lifetimes.utils._customer_lifetime_value`: `factor = {"W": 4.345,
    /// "M": 1.0, "D": 30, ...}[freq]`), so that CLV and expected purchases
    /// over `horizon_months` match lifetimes' for the same time unit; the
    /// two units' months differ by 0.415 days.
    pub fn per_month(self) -> f64 {
        match self {
            TimeUnit::Day => 30.0,
            TimeUnit::Week => 4.345,
        }
    }
}

/// What the job's built-in steps need ([`crate::builtin::NEEDS`]) and the
/// job does not declare: parameters get the built-in default, the
/// `previous` list of the output a step feeds gets the missing columns, and
/// a step it reads that the job lacks is added just before it.
fn add_builtin_needs(spec: &mut JobSpec) {
    let mut i = 0;
    while i < spec.steps.len() {
        if let Some(needs) = crate::builtin::needs(&spec.steps[i].sql) {
            for needed in needs.steps {
                if !spec.steps.iter().any(|s| s.name == needed.name) {
                    let step = StepSpec {
                        name: needed.name.to_string(),
                        sql: format!("{}{}", crate::builtin::PREFIX, needed.file),
                        materialize: needed.materialize,
                    };
                    spec.steps.insert(i, step);
                    i += 1;
                }
            }
        }
        i += 1;
    }
    for step in &spec.steps {
        let Some(needs) = crate::builtin::needs(&step.sql) else {
            continue;
        };
        for (name, literal) in needs.params {
            if !spec.params.contains_key(*name) {
                if let Ok(v) = toml::from_str::<toml::Table>(&format!("v = {literal}")) {
                    if let Some(value) = v.get("v") {
                        spec.params.insert(name.to_string(), value.clone());
                    }
                }
            }
        }
        for out in spec.outputs.iter_mut().filter(|o| o.from == step.name) {
            for col in needs.previous {
                if !out.previous.iter().any(|c| c == col) {
                    out.previous.push(col.to_string());
                }
            }
        }
    }
}

/// The top tiers' shares of the population, in rank order: together at
/// most 1 (Bronze is the rest).
const TIER_FRACTIONS: &[&str] = &["platinum_fraction", "gold_fraction", "silver_fraction"];

/// Parameters that must be numbers in a range: name, lowest, highest.
const RANGES: &[(&str, f64, f64)] = &[
    ("max_rejected_fraction", 0.0, 1.0),
    ("monthly_discount_rate", 0.0, 1.0),
    ("wallet_quantile", 0.0, 1.0),
    ("platinum_fraction", 0.0, 1.0),
    ("gold_fraction", 0.0, 1.0),
    ("silver_fraction", 0.0, 1.0),
    ("pareto_a", 0.0, 1.0),
    ("pareto_b", 0.0, 1.0),
    ("at_risk_p_alive", 0.0, 1.0),
    ("horizon_months", 0.0, 1200.0),
    ("penalizer", 0.0, 1e6),
    ("tier_hysteresis", 0.0, 0.5),
    ("tier_min_nights", 1.0, 1e6),
    ("interval", 0.0, 0.999),
];

/// A job's parameters bound to an as-of date: checked, typed, with the ones
/// custval derives (see [`BUILTIN_PARAMS`]).
#[derive(Debug, Clone)]
pub struct BoundParams {
    /// Last day of data the run uses.
    pub as_of: NaiveDate,
    /// `as_of` less `holdout_days`: the end of the models' calibration period.
    pub calibration_end: NaiveDate,
    /// The job's `time_unit`, when it declares one.
    pub time_unit: Option<TimeUnit>,
    /// The IANA timezone (or fixed offset) whose calendar day is the
    /// purchase day: the parameter `timezone`, `UTC` when absent.
    pub timezone: String,
    /// The purchase models fitted, the one that drives scores, tiers and
    /// CLV first (see [`Job::bind`]): `$model` and `$models` in SQL.
    pub models: Vec<String>,
    /// With `incremental = true` (or `custval run --incremental`): the
    /// parameter `lookback_days` (default 7), days re-read every night for
    /// late rows ([`crate::incremental`]); `None` for a full run.
    pub lookback_days: Option<i64>,
    /// The job's own parameters, after `--set`.
    declared: BTreeMap<String, Param>,
}

impl BoundParams {
    /// Every parameter as a typed SQL value, keyed by name without the `$`.
    pub fn sql_values(&self) -> HashMap<String, ScalarValue> {
        let mut out: HashMap<String, ScalarValue> = self
            .declared
            .iter()
            .map(|(k, v)| (k.clone(), v.to_scalar()))
            .collect();
        let day = |d: NaiveDate| ScalarValue::Int64(Some(epoch_day(d)));
        out.insert("as_of".into(), Param::Date(self.as_of).to_scalar());
        out.insert("as_of_day".into(), day(self.as_of));
        if let Some(unit) = self.time_unit {
            let f = |v: f64| ScalarValue::Float64(Some(v));
            out.insert("time_unit_days".into(), f(unit.days()));
            out.insert("time_units_per_month".into(), f(unit.per_month()));
        }
        out.insert(
            "calibration_end".into(),
            Param::Date(self.calibration_end).to_scalar(),
        );
        out.insert("calibration_end_day".into(), day(self.calibration_end));
        let text = |v: &str| ScalarValue::Utf8(Some(v.to_string()));
        out.insert("model".into(), text(&self.models[0]));
        out.insert("models".into(), text(&self.models.join(",")));
        out
    }

    /// Whether the parameter `value` is `margin`: CLV, concentration and
    /// tiers measure the mapped margin, not the revenue.
    pub fn measures_margin(&self) -> bool {
        self.declared
            .get("value")
            .is_some_and(|v| v.as_str() == Some("margin"))
    }

    /// The job's parameters and the as-of date, for reports and manifests.
    pub fn to_json(&self) -> serde_json::Value {
        let mut m: serde_json::Map<String, serde_json::Value> = self
            .declared
            .iter()
            .map(|(k, v)| (k.clone(), v.to_json()))
            .collect();
        m.insert("as_of".into(), self.as_of.to_string().into());
        serde_json::Value::Object(m)
    }
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
    /// Load a job file from disk and read every SQL file it names: a path
    /// relative to the job file, or `builtin:NAME`, a file of the shipped
    /// `sql/` built into the binary ([`crate::builtin`]).
    pub fn load(path: &Path) -> Result<Job> {
        // A job file that is missing or unreadable is the caller's to fix (exit
        // 2), not a failed run to retry.
        let text = std::fs::read_to_string(path)
            .map_err(|e| Error::job(path, format!("cannot read the job file: {e}")))?;
        let base = path.parent().unwrap_or_else(|| Path::new("."));
        Self::parse(path, &text, |file| {
            if let Some(found) = crate::builtin::resolve(file) {
                return found.map(str::to_string).map_err(|m| Error::job(path, m));
            }
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
        let mut spec: JobSpec =
            toml::from_str(text).map_err(|e| Error::job(path, e.to_string()))?;
        add_builtin_needs(&mut spec);
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
        for (input, i) in &spec.inputs {
            check_identifier(path, "input", input)?;
            names.insert(input.clone());
            if i.kind == InputKind::Table && !i.timestamp_format.is_empty() {
                return Err(Error::job(
                    path,
                    format!("input {input}: timestamp_format reads a transactions input's order_ts; a table input has none"),
                ));
            }
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
        check_param_keys(path, &params, &sql)?;
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
                Error::Argument(format!(
                    "--set {key}: the job declares no parameter {key} (known: {})",
                    known.join(", ")
                ))
            })?;
            let value = current
                .parse_like(raw)
                .map_err(|m| Error::param(key, format!("--set {key}={raw}: {m}")))?;
            self.params.insert(key.clone(), value);
        }
        Ok(())
    }

    /// Apply `--csv NAME.OPTION=VALUE` flags to the job's inputs.
    pub fn apply_csv_flags(&mut self, flags: &[(String, String)]) -> Result<()> {
        let mut specs: BTreeMap<String, CsvSpec> = self
            .spec
            .inputs
            .iter()
            .map(|(n, i)| (n.clone(), i.csv.clone()))
            .collect();
        let names: Vec<String> = specs.keys().cloned().collect();
        apply_csv_flags(&mut specs, flags, "input", &|n| {
            names.iter().any(|k| k == n)
        })?;
        for (name, csv) in specs {
            if let Some(input) = self.spec.inputs.get_mut(&name) {
                input.csv = csv;
            }
        }
        Ok(())
    }

    /// Bind the job to `as_of`: check every parameter custval knows the
    /// meaning of and derive the built-in ones. Errors are [`Error::Param`]
    /// and show the value as written (`got "month"`).
    pub fn bind(&self, as_of: NaiveDate) -> Result<BoundParams> {
        let time_unit = match self.params.get("time_unit") {
            None => None,
            Some(p) => Some(p.as_str().and_then(TimeUnit::parse).ok_or_else(|| {
                Error::param("time_unit", format!("must be day or week, got {p}"))
            })?),
        };
        let holdout = self.whole_days("holdout_days")?.unwrap_or(0);
        self.whole_days("max_staleness_days")?;
        for (k, lo, hi) in RANGES {
            if let Some(p) = self.params.get(*k) {
                if !p.as_f64().is_some_and(|v| (*lo..=*hi).contains(&v)) {
                    let m = format!("must be a number in [{lo}, {hi}], got {p}");
                    return Err(Error::param(*k, m));
                }
            }
        }
        self.check_value_param()?;
        self.check_tier_fractions()?;
        let timezone = self.timezone()?;
        self.check_uplift_points()?;
        self.check_wallet_method()?;
        let models = self.models()?;
        let lookback_days = self.lookback_days(holdout)?;
        Ok(BoundParams {
            as_of,
            calibration_end: as_of - chrono::Duration::days(holdout),
            time_unit,
            timezone,
            models,
            lookback_days,
            declared: self.params.clone(),
        })
    }

    /// The purchase models to fit, the one that drives scores first: `model`
    /// (default: the first of `models`, else `bgnbd`), then the others of
    /// `models` (a list or comma-separated string), each once. Each must be
    /// one of [`PURCHASE_MODELS`].
    fn models(&self) -> Result<Vec<String>> {
        let check = |name: &str, v: &str| -> Result<String> {
            let v = v.trim();
            if PURCHASE_MODELS.contains(&v) {
                Ok(v.to_string())
            } else {
                Err(Error::param(
                    name,
                    format!(
                        "must name models among {}, got {v:?}",
                        PURCHASE_MODELS.join(", ")
                    ),
                ))
            }
        };
        let text = |name: &str| -> Result<Option<&str>> {
            match self.params.get(name) {
                None => Ok(None),
                Some(p) => p.as_str().map(Some).ok_or_else(|| {
                    Error::param(
                        name,
                        format!("must be a model name or a list of them, got {p}"),
                    )
                }),
            }
        };
        let listed: Vec<String> = match text("models")? {
            Some(list) if !list.trim().is_empty() => list
                .split(',')
                .map(|v| check("models", v))
                .collect::<Result<_>>()?,
            _ => Vec::new(),
        };
        let first = match text("model")? {
            Some(m) => check("model", m)?,
            None => listed.first().cloned().unwrap_or_else(|| "bgnbd".into()),
        };
        let mut models = vec![first];
        for m in listed {
            if !models.contains(&m) {
                models.push(m);
            }
        }
        Ok(models)
    }

    /// A parameter counting days: a whole number >= 0 when declared.
    fn whole_days(&self, name: &str) -> Result<Option<i64>> {
        match self.params.get(name) {
            Some(Param::Int(d)) if *d >= 0 => Ok(Some(*d)),
            Some(other) => Err(Error::param(
                name,
                format!("must be a whole number of days >= 0, got {other}"),
            )),
            None => Ok(None),
        }
    }

    /// `incremental` (a boolean, default false) and `lookback_days` (whole
    /// days >= 1, default 7): the lookback of an incremental run, `None`
    /// for a full one. The state's days must all fall in the models'
    /// calibration period, so `holdout_days` may not exceed the lookback.
    fn lookback_days(&self, holdout: i64) -> Result<Option<i64>> {
        let incremental = match self.params.get("incremental") {
            None => false,
            Some(p) => p.as_bool().ok_or_else(|| {
                Error::param("incremental", format!("must be true or false, got {p}"))
            })?,
        };
        let lookback = self.whole_days("lookback_days")?.unwrap_or(7);
        if lookback < 1 {
            let m = format!("must be at least 1 day, got {lookback}");
            return Err(Error::param("lookback_days", m));
        }
        if incremental && holdout > lookback {
            let m = format!(
                "an incremental run needs holdout_days ({holdout}) <= lookback_days ({lookback}): \
                 the kept state's days must all be in the models' calibration period"
            );
            return Err(Error::param("lookback_days", m));
        }
        Ok(incremental.then_some(lookback))
    }

    /// `timezone`: an IANA name (`Europe/London`) or offset (`+01:00`) as
    /// Arrow reads it; `UTC` when the job declares none.
    fn timezone(&self) -> Result<String> {
        let Some(p) = self.params.get("timezone") else {
            return Ok("UTC".into());
        };
        let known = p.as_str().filter(|z| {
            use std::str::FromStr;
            datafusion::arrow::array::timezone::Tz::from_str(z).is_ok()
        });
        known.map(str::to_string).ok_or_else(|| {
            Error::param(
                "timezone",
                format!("must be an IANA timezone name such as \"Europe/London\" or an offset such as \"+01:00\", got {p}"),
            )
        })
    }

    /// The tier fractions the job declares share one population: their
    /// sum is at most 1 (each is checked alone in [`RANGES`]).
    fn check_tier_fractions(&self) -> Result<()> {
        let declared: Vec<(&str, f64)> = TIER_FRACTIONS
            .iter()
            .filter_map(|k| Some((*k, self.params.get(*k)?.as_f64()?)))
            .collect();
        let sum: f64 = declared.iter().map(|(_, v)| v).sum();
        // A tolerance for decimals that add to 1 (0.1 + 0.2 + 0.7).
        if sum <= 1.0 + 1e-9 {
            return Ok(());
        }
        let names: Vec<&str> = declared.iter().map(|(k, _)| *k).collect();
        let values: Vec<String> = declared.iter().map(|(_, v)| v.to_string()).collect();
        Err(Error::param(
            names.join(" + "),
            format!(
                "the tiers' population shares add up to {sum} ({}), more than 1: lower them so that they add up to at most 1 (the rest is Bronze)",
                values.join(" + ")
            ),
        ))
    }

    /// `retention_uplift_points`, when declared: a comma-separated list of
    /// retention points, each a number above 0 and below 100.
    fn check_uplift_points(&self) -> Result<()> {
        let name = "retention_uplift_points";
        let Some(p) = self.params.get(name) else {
            return Ok(());
        };
        let ok = p.as_str().is_some_and(|list| {
            list.split(',')
                .all(|v| v.trim().parse::<f64>().is_ok_and(|k| k > 0.0 && k < 100.0))
        });
        if ok {
            Ok(())
        } else {
            let m = format!(
                "must be comma-separated points above 0 and below 100, e.g. \"1,5,10\", got {p}"
            );
            Err(Error::param(name, m))
        }
    }

    /// `wallet_method`, when declared: `model` (the quantile regression) or
    /// `peer_group` (the peer group's quantile of 12-month spend).
    fn check_wallet_method(&self) -> Result<()> {
        match self.params.get("wallet_method") {
            None => Ok(()),
            Some(p) if matches!(p.as_str(), Some("model" | "peer_group")) => Ok(()),
            Some(p) => Err(Error::param(
                "wallet_method",
                format!("must be model or peer_group, got {p}"),
            )),
        }
    }

    /// `value` is revenue or margin. Whether a transactions input has a
    /// margin is known only once its columns are read: the reader's own
    /// resolution decides it ([`crate::input::require_margin`]).
    fn check_value_param(&self) -> Result<()> {
        match self.params.get("value") {
            None => Ok(()),
            Some(v) if matches!(v.as_str(), Some("revenue" | "margin")) => Ok(()),
            Some(v) => Err(Error::param(
                "value",
                format!("must be revenue or margin, got {v}"),
            )),
        }
    }
}

/// The purchase models a job may fit (`model`, `models`): the SQL
/// functions `<name>_fit`, `<name>_p_alive`, `<name>_expected_purchases`.
pub const PURCHASE_MODELS: &[&str] = &["bgnbd", "pareto_nbd", "mbgnbd"];

/// Parameters custval itself reads (besides those the SQL uses).
const READ_BY_CUSTVAL: &[&str] = &[
    "incremental",
    "lookback_days",
    "model",
    "models",
    "time_unit",
    "value",
    "holdout_days",
    "timezone",
    "max_staleness_days",
    "retention_uplift_points",
];

/// The `$name` placeholders a SQL text mentions (comments included: a
/// mention there makes a key known rather than rejected).
fn placeholders(sql: &str) -> std::collections::BTreeSet<String> {
    let mut out = std::collections::BTreeSet::new();
    for (i, _) in sql.match_indices('$') {
        let name: String = sql[i + 1..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        if name.chars().next().is_some_and(|c| !c.is_ascii_digit()) {
            out.insert(name);
        }
    }
    out
}

/// Every key of `[params]` must be used by a SQL file as `$key` or read by
/// custval: a key nothing reads is a typo ([`Error::JobFile`], exit 2,
/// naming it and the known keys), not a silent default.
fn check_param_keys(
    path: &Path,
    params: &BTreeMap<String, Param>,
    sql: &BTreeMap<String, String>,
) -> Result<()> {
    let mut known: std::collections::BTreeSet<String> =
        sql.values().flat_map(|s| placeholders(s)).collect();
    known.extend(READ_BY_CUSTVAL.iter().map(|k| k.to_string()));
    known.extend(RANGES.iter().map(|(k, _, _)| k.to_string()));
    for b in BUILTIN_PARAMS {
        known.remove(*b);
    }
    let unknown: Vec<&str> = params
        .keys()
        .filter(|k| !known.contains(*k))
        .map(|k| k.as_str())
        .collect();
    if unknown.is_empty() {
        return Ok(());
    }
    let known: Vec<&str> = known.iter().map(|k| k.as_str()).collect();
    Err(Error::job(
        path,
        format!(
            "unknown key in [params]: {} (no SQL file uses it as ${} and custval does not read it; known keys: {})",
            unknown.join(", "),
            unknown[0],
            known.join(", ")
        ),
    ))
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
        _ => Err(Error::Argument(format!(
            "{flag} expects NAME=VALUE, got {raw:?}"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A job whose SQL files all read `$rate`.
    fn parse(text: &str) -> Result<Job> {
        Job::parse(Path::new("t.toml"), text, |_| {
            Ok("SELECT $rate AS rate".to_string())
        })
    }

    #[test]
    fn a_params_key_nothing_reads_is_named_with_the_known_keys() {
        let err = parse(&MINIMAL.replace(
            "rate = 0.01",
            "rate = 0.01
horizon_month = 6",
        ))
        .unwrap_err();
        assert_eq!(err.exit_code(), 2);
        let text = err.to_string();
        assert!(
            text.contains("unknown key in [params]: horizon_month (")
                && text.contains("known keys: ")
                && text.contains("horizon_months")
                && text.contains("rate"),
            "{text}"
        );
        assert_eq!(
            placeholders("SELECT $a, $b_2 FROM t WHERE x = $1"),
            ["a", "b_2"].iter().map(|s| s.to_string()).collect()
        );
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

    /// A job written for an earlier custval (an older `custval init`)
    /// keeps running when a built-in step grows: the parameters it does not
    /// declare get the built-in defaults, and the output the tier step feeds
    /// reads the previous columns the step needs. Declared values stay.
    #[test]
    fn builtin_steps_bring_their_parameters_and_previous_columns() {
        let old = MINIMAL
            .replace("sql = \"a.sql\"", "sql = \"builtin:10_rank_customers.sql\"")
            .replace(
                "from = \"a\"",
                "from = \"a\"\nprevious = [\"customer_id\", \"tier\"]",
            )
            .replace("rate = 0.01", "rate = 0.01\ntier_min_nights = 5");
        let job = parse(&old).unwrap();
        assert!(matches!(job.params["tier_hysteresis"], Param::Float(v) if v == 0.02));
        assert!(matches!(job.params["tier_min_nights"], Param::Int(5)));
        assert_eq!(
            job.spec.outputs[0].previous,
            [
                "customer_id",
                "tier",
                "tier_changed_at",
                "tier_pending_nights"
            ]
        );
        let scenarios = MINIMAL.replace("a.sql", "builtin:19_project_retention_scenarios.sql");
        let job = parse(&scenarios).unwrap();
        assert!(matches!(&job.params["retention_uplift_points"], Param::Str(s) if s == "1,5,10"));
        let err = job_with_uplifts("1,x").unwrap_err().to_string();
        assert!(
            err.contains("retention_uplift_points") && err.contains("1,x"),
            "{err}"
        );
        assert!(job_with_uplifts("0.5, 5,10").is_ok());
        assert!(job_with_uplifts("100").is_err());
    }

    fn job_with_uplifts(list: &str) -> Result<BoundParams> {
        let mut job =
            parse(&MINIMAL.replace("a.sql", "builtin:19_project_retention_scenarios.sql"))?;
        job.apply_overrides(&[("retention_uplift_points".into(), list.into())])?;
        job.bind(NaiveDate::from_ymd_opt(2024, 1, 31).unwrap_or_default())
    }

    /// A job written before the wallet estimate's inputs became their own
    /// step (`wallet_features`) gets that step, materialized, just before the
    /// built-in wallet step; a job that has a step of that name keeps its own.
    #[test]
    fn builtin_wallet_step_brings_its_features_step() {
        let old = MINIMAL
            .replace("a.sql", "builtin:09_estimate_wallets.sql")
            .replace("rate = 0.01\n", "");
        // The built-in steps' real SQL; the job's own file reads nothing.
        let parse = |text: &str| {
            Job::parse(Path::new("t.toml"), text, |file| {
                Ok(match crate::builtin::resolve(file) {
                    Some(Ok(sql)) => sql.to_string(),
                    _ => "SELECT 1 AS one".to_string(),
                })
            })
        };
        let job = parse(&old).unwrap();
        let steps: Vec<(&str, &str, bool)> = job
            .spec
            .steps
            .iter()
            .map(|s| (s.name.as_str(), s.sql.as_str(), s.materialize))
            .collect();
        assert_eq!(
            steps,
            [
                (
                    "wallet_features",
                    "builtin:32_gather_wallet_features.sql",
                    true
                ),
                ("a", "builtin:09_estimate_wallets.sql", false)
            ]
        );
        let own = old.replace(
            "[[steps]]\nname = \"a\"",
            "[[steps]]\nname = \"wallet_features\"\nsql = \"mine.sql\"\n\n[[steps]]\nname = \"a\"",
        );
        assert_ne!(own, old);
        let job = parse(&own).unwrap();
        let names: Vec<(&str, &str)> = job
            .spec
            .steps
            .iter()
            .map(|s| (s.name.as_str(), s.sql.as_str()))
            .collect();
        assert_eq!(
            names,
            [
                ("wallet_features", "mine.sql"),
                ("a", "builtin:09_estimate_wallets.sql")
            ]
        );
    }

    /// A job naming the built-in wallet step gets `wallet_method = "model"`
    /// (a job from before issue 20 does not declare it); anything but model
    /// or peer_group exits 2 naming the parameter and the value.
    #[test]
    fn wallet_method_defaults_to_model_and_is_checked() {
        let wallets = MINIMAL
            .replace("a.sql", "builtin:09_estimate_wallets.sql")
            .replace("rate = 0.01\n", "");
        // The step's real SQL, which reads $wallet_method.
        let parse = |text: &str| {
            Job::parse(Path::new("t.toml"), text, |_| {
                Ok(crate::builtin::sql("09_estimate_wallets.sql")
                    .unwrap_or_default()
                    .to_string())
            })
        };
        let job = parse(&wallets).unwrap();
        assert!(matches!(&job.params["wallet_method"], Param::Str(s) if s == "model"));
        let day = NaiveDate::from_ymd_opt(2024, 1, 31).unwrap_or_default();
        for (method, ok) in [("peer_group", true), ("knn", false)] {
            let mut job = parse(&wallets).unwrap();
            job.apply_overrides(&[("wallet_method".into(), method.into())])
                .unwrap();
            match job.bind(day) {
                Ok(_) => assert!(ok, "{method} accepted"),
                Err(e) => {
                    assert!(!ok, "{method}: {e}");
                    assert_eq!(e.exit_code(), 2);
                    let m = e.to_string();
                    assert!(m.contains("wallet_method") && m.contains("knn"), "{m}");
                }
            }
        }
    }

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
    fn binding_derives_the_time_unit_and_calibration_end() {
        let job = parse(&MINIMAL.replace("rate = 0.01", "holdout_days = 28")).unwrap();
        let as_of = NaiveDate::from_ymd_opt(2024, 3, 31).unwrap();
        let b = job.bind(as_of).unwrap();
        assert_eq!(b.time_unit, Some(TimeUnit::Week));
        assert_eq!(
            b.calibration_end,
            NaiveDate::from_ymd_opt(2024, 3, 3).unwrap()
        );
        let v = b.sql_values();
        assert_eq!(v["time_unit_days"], ScalarValue::Float64(Some(7.0)));
        assert_eq!(v["time_units_per_month"], ScalarValue::Float64(Some(4.345)));
        assert_eq!(v["as_of_day"], ScalarValue::Int64(Some(epoch_day(as_of))));
        assert_eq!(b.to_json()["as_of"], "2024-03-31");
    }

    #[test]
    fn the_models_default_to_bgnbd_and_model_comes_first() {
        // No model parameters: BG/NBD alone. `models` as a TOML list or a
        // comma string (as --set gives it); `model` first, each once; an
        // unknown name is a parameter error naming the value (exit 2).
        let as_of = NaiveDate::from_ymd_opt(2024, 3, 31).unwrap();
        let models = |extra: &str| {
            let job = parse(&MINIMAL.replace("rate = 0.01", extra)).unwrap();
            job.bind(as_of).map(|b| {
                let v = b.sql_values();
                (b.models, v["model"].clone(), v["models"].clone())
            })
        };
        let text = |v: &str| ScalarValue::Utf8(Some(v.into()));
        assert_eq!(
            models("rate = 0.01").unwrap(),
            (vec!["bgnbd".to_string()], text("bgnbd"), text("bgnbd"))
        );
        let (m, first, all) = models(r#"models = ["pareto_nbd", "bgnbd"]"#).unwrap();
        assert_eq!(
            (m.len(), first, all),
            (2, text("pareto_nbd"), text("pareto_nbd,bgnbd"))
        );
        let (m, first, all) = models("model = \"mbgnbd\"\nmodels = \"bgnbd, mbgnbd\"").unwrap();
        assert_eq!(
            (m.len(), first, all),
            (2, text("mbgnbd"), text("mbgnbd,bgnbd"))
        );
        let err = models(r#"models = ["bgnbd", "pareto"]"#).unwrap_err();
        assert_eq!(err.exit_code(), 2);
        assert!(err.to_string().contains(r#""pareto""#), "{err}");
        assert!(models("model = 3").is_err());
    }

    #[test]
    fn parameter_errors_show_values_as_written() {
        let as_of = NaiveDate::from_ymd_opt(2024, 3, 31).unwrap();
        let job = parse(&MINIMAL.replace("\"week\"", "\"month\"")).unwrap();
        let err = job.bind(as_of).unwrap_err();
        assert_eq!(err.exit_code(), 2);
        assert!(err.to_string().contains(r#"got "month""#), "{err}");
        let job = parse(&MINIMAL.replace("horizon_months = 12", "horizon_months = 5000")).unwrap();
        let err = job.bind(as_of).unwrap_err().to_string();
        assert!(
            err.contains("horizon_months") && err.ends_with("got 5000"),
            "{err}"
        );
    }

    /// The trial's `--set platinum_fraction=0.6` with gold 0.15 and silver
    /// 0.3: 1.05 of the population, exit 2 naming all three and the sum.
    #[test]
    fn tier_fractions_adding_past_1_are_refused_with_their_sum() {
        let as_of = NaiveDate::from_ymd_opt(2024, 3, 31).unwrap();
        let tiers = |p: &str| {
            let text = MINIMAL.replace(
                "rate = 0.01",
                &format!("rate = 0.01\nplatinum_fraction = {p}\ngold_fraction = 0.15\nsilver_fraction = 0.3"),
            );
            Job::parse(Path::new("t.toml"), &text, |_| {
                Ok("SELECT $rate, $platinum_fraction, $gold_fraction, $silver_fraction".into())
            })
            .unwrap()
            .bind(as_of)
        };
        let err = tiers("0.6").unwrap_err();
        assert_eq!(err.exit_code(), 2);
        let m = err.to_string();
        assert!(
            m.starts_with("parameter platinum_fraction + gold_fraction + silver_fraction:")
                && m.contains("add up to 1.05")
                && m.contains("(0.6 + 0.15 + 0.3)"),
            "{m}"
        );
        // 0.55 + 0.15 + 0.3 is 1 but for rounding: allowed.
        assert!(tiers("0.55").is_ok());
        assert!(tiers("0.05").is_ok());
    }

    #[test]
    fn day_counts_must_be_whole_and_not_negative() {
        let as_of = NaiveDate::from_ymd_opt(2024, 3, 31).unwrap();
        for bad in ["-1", "2.5", "\"3\""] {
            let text = MINIMAL.replace("rate = 0.01", &format!("max_staleness_days = {bad}"));
            let err = parse(&text).unwrap().bind(as_of).unwrap_err();
            assert_eq!(err.exit_code(), 2, "{bad}");
            assert!(err.to_string().contains("max_staleness_days"), "{err}");
        }
        let text = MINIMAL.replace("rate = 0.01", "max_staleness_days = 0");
        assert!(parse(&text).unwrap().bind(as_of).is_ok());
    }

    #[test]
    fn the_timezone_is_utc_by_default_and_must_be_known() {
        let as_of = NaiveDate::from_ymd_opt(2024, 3, 31).unwrap();
        assert_eq!(parse(MINIMAL).unwrap().bind(as_of).unwrap().timezone, "UTC");
        let mut job = parse(&MINIMAL.replace("rate = 0.01", "timezone = \"UTC\"")).unwrap();
        job.apply_overrides(&[("timezone".into(), "America/New_York".into())])
            .unwrap();
        assert_eq!(job.bind(as_of).unwrap().timezone, "America/New_York");
        job.apply_overrides(&[("timezone".into(), "Mars/Olympus".into())])
            .unwrap();
        let err = job.bind(as_of).unwrap_err();
        assert_eq!(err.exit_code(), 2);
        assert!(err.to_string().contains("Mars/Olympus"), "{err}");
    }

    #[test]
    fn timestamp_format_is_one_format_or_a_list() {
        let input = |fmt: &str| {
            let text = format!(
                "{MINIMAL}\n[inputs.tx]\nkind = \"transactions\"\ntimestamp_format = {fmt}\nwhere = \"Country <> 'X'\"\n"
            );
            parse(&text).map(|j| j.spec.inputs["tx"].clone())
        };
        let one = input("\"%m/%d/%Y %H:%M\"").unwrap();
        assert_eq!(one.timestamp_format, vec!["%m/%d/%Y %H:%M"]);
        assert_eq!(one.filter.as_deref(), Some("Country <> 'X'"));
        let two = input("[\"%m/%d/%Y %H:%M\", \"%Y-%m-%d\"]").unwrap();
        assert_eq!(two.timestamp_format, vec!["%m/%d/%Y %H:%M", "%Y-%m-%d"]);
        assert!(input("3").is_err());
        let text = format!("{MINIMAL}\n[inputs.w]\nkind = \"table\"\ntimestamp_format = \"%Y\"\n");
        let err = parse(&text).unwrap_err().to_string();
        assert!(err.contains("input w: timestamp_format"), "{err}");
    }

    #[test]
    fn builtin_parameters_cannot_be_declared() {
        let text = MINIMAL.replace("rate = 0.01", "as_of = 2020-01-01");
        assert!(parse(&text).is_err());
    }
}
