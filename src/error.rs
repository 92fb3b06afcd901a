//! The one error type of custval: every variant carries the file, URL, column or
//! value it is about, and maps to the exit code of SPEC.md.

use std::path::PathBuf;

use datafusion::error::DataFusionError;

/// Result alias used across the library.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can stop a custval command. Each variant is named by
/// what is wrong, carries what it is about, and alone decides the exit code.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A command-line flag or its value is invalid (exit 2).
    #[error("invalid argument: {0}")]
    Argument(String),

    /// `--select` or `--exclude` names a step the job does not have (exit 2).
    #[error("{flag} {step}: the job has no such step (steps: {steps})")]
    UnknownStep {
        /// The flag: `--select` or `--exclude`.
        flag: String,
        /// The selector as written, e.g. `rfm_typo+`.
        step: String,
        /// The job's steps, in order, comma-separated.
        steps: String,
    },

    /// A query given to `custval sql` does not parse or may not run (exit 2).
    #[error("invalid query: {0}")]
    Query(String),

    /// A job parameter has a value it may not take (exit 2).
    #[error("parameter {name}: {message}")]
    Param {
        /// The parameter.
        name: String,
        /// What is wrong, with the value as written: `must be day or week, got "month"`.
        message: String,
    },

    /// The job file is unreadable or invalid (exit 2).
    #[error("job file {path}: {message}")]
    JobFile {
        /// The job file.
        path: PathBuf,
        /// What is wrong, naming the field, step or file.
        message: String,
    },

    /// A URL or path that custval cannot use (exit 2).
    #[error("{url}: {message}")]
    Url {
        /// The URL, redacted, or the path.
        url: String,
        /// What is wrong with it.
        message: String,
    },

    /// An environment variable custval reads has an unusable value (exit 2).
    #[error("environment variable {var}: {message}")]
    Env {
        /// The variable's name.
        var: String,
        /// What is wrong, with the value.
        message: String,
    },

    /// An input's schema does not fit the job (exit 2).
    #[error("input {input} ({url}): {message}")]
    InputSchema {
        /// The input's name in the job.
        input: String,
        /// The input's or the file's redacted URL.
        url: String,
        /// What does not fit, naming the column.
        message: String,
    },

    /// An input's reading option (`[inputs.NAME.csv]` or `--csv`) has a
    /// value custval cannot use (exit 2).
    #[error("input {input}: CSV option {option} = {value:?}: {message}")]
    InputOption {
        /// The input's (or `custval sql` table's) name.
        input: String,
        /// The option, as the job file spells it (`delimiter`).
        option: String,
        /// The value as written.
        value: String,
        /// What is wrong with it and what it may be.
        message: String,
    },

    /// An input's rows cannot be read: malformed CSV or Parquet found while
    /// reading past the sample the schema came from (exit 2).
    #[error("input {input} ({file}): unreadable data: {message}")]
    InputData {
        /// The inputs the run read, comma-separated.
        input: String,
        /// Their redacted URLs, comma-separated.
        file: String,
        /// The reader's error, on one line.
        message: String,
    },

    /// The job's mapping cannot compute a value of an input: an expression
    /// (or the `where` filter) fails on the input's values while the job
    /// runs, as `to_timestamp(created)` on text holding epoch seconds. The
    /// input or the mapping is to fix; a retry would fail the same (exit 2).
    #[error(
        "input {input} ({url}): {column} = {expression:?} fails on the input's values: {message}"
    )]
    MappingValue {
        /// The input's name in the job.
        input: String,
        /// Its redacted URL.
        url: String,
        /// The canonical column the expression computes (`where` for the filter).
        column: String,
        /// The expression as the job writes it.
        expression: String,
        /// The engine's error, naming the value, on one line, and a hint
        /// when one is known.
        message: String,
    },

    /// A file custval would write exists and is not custval's to replace:
    /// `init` never overwrites (exit 2).
    #[error("{path}: already exists; custval init never overwrites a file (use another folder, or move it away)")]
    FileExists {
        /// The existing file.
        path: PathBuf,
    },

    /// A SQL step or gate does not parse or plan, found by `check` (exit 2).
    #[error("step {step} ({file}): {source}")]
    InvalidStep {
        /// The step or gate.
        step: String,
        /// Its SQL file, as the job names it.
        file: String,
        /// The planner's error.
        #[source]
        source: Box<DataFusionError>,
    },

    /// A SQL step failed while the job ran (exit 1).
    #[error("step {step} ({file}): {source}")]
    Step {
        /// The step or gate.
        step: String,
        /// Its SQL file, as the job names it.
        file: String,
        /// The engine's error.
        #[source]
        source: Box<DataFusionError>,
    },

    /// A data-quality gate failed (exit 3). Nothing was published.
    #[error("data-quality gate {gate} failed: {message}")]
    Gate {
        /// The gate.
        gate: String,
        /// Its violations' messages (up to 20), the inputs judged, the top
        /// reasons rows were rejected and where the rejected rows were kept.
        message: String,
        /// What the run had measured, for the run report: `run_id`, the
        /// `quality` row, `rejections` (reason, column, rows, example row,
        /// hint) and `rejected_rows` (the `_failed/` folder); null when the
        /// gate failed before anything was measured.
        evidence: serde_json::Value,
    },

    /// Local file-system failure (exit 1).
    #[error("{path}: {source}")]
    Io {
        /// The file or folder (`<stdout>`, `<stdin>` for the streams).
        path: PathBuf,
        /// The system's error.
        #[source]
        source: std::io::Error,
    },

    /// An output file could not be written: the store refused or failed the
    /// write, or the folder is not writable (exit 1: the run failed, the
    /// input is fine; nothing new was published).
    #[error("output {url}: cannot write: {message}")]
    OutputWrite {
        /// The file's redacted URL.
        url: String,
        /// The writer's or the store's error, on one line.
        message: String,
    },

    /// A Delta table could not be written or committed: the store failed,
    /// or another writer committed first (exit 1: the run failed; the
    /// table is still at its previous version).
    #[error("delta table {url}: cannot commit: {message}")]
    DeltaCommit {
        /// The Delta table's redacted URL (`OUTPUT/<table>/`).
        url: String,
        /// deltalake's error, on one line.
        message: String,
    },

    /// The rows cannot go into the existing Delta table as it is: another
    /// schema or partitioning, or a column named `as_of` (exit 2: fix the
    /// job or the table; nothing was committed).
    #[error("delta table {url}: {message}")]
    DeltaTable {
        /// The Delta table's redacted URL (`OUTPUT/<table>/`).
        url: String,
        /// What does not fit, on one line.
        message: String,
    },

    /// Object-store failure (exit 1).
    #[error("storage {url}: {source}")]
    Storage {
        /// The redacted URL: never credentials.
        url: String,
        /// The store's error.
        #[source]
        source: Box<object_store::Error>,
    },

    /// A partition is being published by another run (exit 1).
    #[error("{url}: {message}")]
    Conflict {
        /// The lock or manifest.
        url: String,
        /// Who holds it, or what is wrong with it.
        message: String,
    },

    /// A Ballista scheduler or executor could not start or be reached (exit 1).
    #[error("cluster {address}: {message}")]
    Cluster {
        /// `host:port` of the process.
        address: String,
        /// What failed.
        message: String,
    },

    /// A chart of `report.html` could not be drawn (exit 1; the run's tables
    /// are published before the report, so the run logs it as a warning).
    #[error("report chart {chart}: {message}")]
    Chart {
        /// The chart's id in the page (`lorenz`, `tracking`, ...).
        chart: String,
        /// The plotting library's error.
        message: String,
    },

    /// A scheduler refused this client: no cluster secret, or a wrong one
    /// (exit 1). The message says which; it never quotes a secret.
    #[error("cluster {address}: {message}")]
    ClusterRefused {
        /// `ballista://host:port` of the scheduler.
        address: String,
        /// Why, and what to set.
        message: String,
    },

    /// A TLS file (`--tls-cert`, `--tls-key`, `--tls-ca`) is not what it
    /// should be (exit 2).
    #[error("{}: {message}", path.display())]
    Tls {
        /// The PEM file.
        path: PathBuf,
        /// What is wrong with it.
        message: String,
    },

    /// Engine failure (exit 1, or the code of a custval error inside it).
    #[error(transparent)]
    DataFusion(Box<DataFusionError>),

    /// A report, manifest or row could not be turned into JSON (exit 1).
    #[error("JSON: {0}")]
    Json(#[from] serde_json::Error),

    /// A bug or an impossible state (exit 1).
    #[error("internal error: {0}")]
    Internal(String),
}

impl Error {
    /// Exit code of SPEC.md: 1 run failed, 2 invalid arguments, job, parameters,
    /// SQL or input data, 3 gate. Decided by the variant alone.
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Argument(_)
            | Error::UnknownStep { .. }
            | Error::Query(_)
            | Error::Param { .. }
            | Error::JobFile { .. }
            | Error::Url { .. }
            | Error::Env { .. }
            | Error::InputSchema { .. }
            | Error::InputOption { .. }
            | Error::InputData { .. }
            | Error::MappingValue { .. }
            | Error::FileExists { .. }
            | Error::Tls { .. }
            | Error::InvalidStep { .. }
            | Error::DeltaTable { .. } => 2,
            Error::Gate { .. } => 3,
            Error::DataFusion(e) => match find_custval_error(e) {
                Some(inner) => inner.exit_code(),
                None => 1,
            },
            Error::Step { .. }
            | Error::Io { .. }
            | Error::OutputWrite { .. }
            | Error::DeltaCommit { .. }
            | Error::Storage { .. }
            | Error::Conflict { .. }
            | Error::Cluster { .. }
            | Error::Chart { .. }
            | Error::ClusterRefused { .. }
            | Error::Json(_)
            | Error::Internal(_) => 1,
        }
    }

    /// Shorthand for a job-file error.
    pub fn job(path: impl Into<PathBuf>, message: impl Into<String>) -> Self {
        Error::JobFile {
            path: path.into(),
            message: message.into(),
        }
    }

    /// Shorthand for an invalid parameter value.
    pub fn param(name: impl Into<String>, message: impl Into<String>) -> Self {
        Error::Param {
            name: name.into(),
            message: message.into(),
        }
    }

    /// Shorthand for a URL or path custval cannot use; `url` must be redacted.
    pub fn url(url: impl Into<String>, message: impl Into<String>) -> Self {
        Error::Url {
            url: url.into(),
            message: message.into(),
        }
    }

    /// Shorthand for an I/O error on a path.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }

    /// Shorthand for an object-store error on a URL.
    pub fn storage(url: impl Into<String>, source: object_store::Error) -> Self {
        Error::Storage {
            url: url.into(),
            source: Box::new(source),
        }
    }
}

/// A custval error raised inside a UDF travels through DataFusion as
/// `DataFusionError::External`; find it again so its exit code survives.
fn find_custval_error(e: &DataFusionError) -> Option<&Error> {
    match e {
        DataFusionError::External(inner) => inner.downcast_ref::<Error>(),
        DataFusionError::Context(_, inner) => find_custval_error(inner),
        DataFusionError::Shared(inner) => find_custval_error(inner),
        _ => None,
    }
}

/// Whether an engine error came from decoding a file: the CSV and Parquet
/// readers' own error types, wherever DataFusion wrapped them.
pub fn is_read_fault(e: &DataFusionError) -> bool {
    use datafusion::arrow::error::ArrowError;
    fn arrow(e: &ArrowError) -> bool {
        match e {
            ArrowError::CsvError(_) | ArrowError::ParquetError(_) => true,
            ArrowError::ExternalError(inner) => external(inner.as_ref()),
            _ => false,
        }
    }
    fn external(e: &(dyn std::error::Error + Send + Sync + 'static)) -> bool {
        if let Some(a) = e.downcast_ref::<ArrowError>() {
            return arrow(a);
        }
        if let Some(d) = e.downcast_ref::<DataFusionError>() {
            return is_read_fault(d);
        }
        e.is::<datafusion::parquet::errors::ParquetError>()
    }
    match e {
        DataFusionError::ArrowError(a, _) => arrow(a),
        DataFusionError::ParquetError(_) => true,
        DataFusionError::External(inner) => external(inner.as_ref()),
        DataFusionError::Context(_, inner) => is_read_fault(inner),
        DataFusionError::Shared(inner) => is_read_fault(inner),
        DataFusionError::Collection(all) => all.iter().any(is_read_fault),
        _ => false,
    }
}

/// Whether an engine error is about a value an expression computes: Arrow's
/// cast, parse, arithmetic and argument errors, and a function's execution
/// error, wherever DataFusion wrapped them. Not a read fault, a store or
/// file-system failure, or a custval error raised inside a function.
pub fn is_value_fault(e: &DataFusionError) -> bool {
    use datafusion::arrow::error::ArrowError;
    fn arrow(e: &ArrowError) -> bool {
        match e {
            ArrowError::CastError(_)
            | ArrowError::ParseError(_)
            | ArrowError::ComputeError(_)
            | ArrowError::DivideByZero
            | ArrowError::ArithmeticOverflow(_)
            | ArrowError::InvalidArgumentError(_) => true,
            ArrowError::ExternalError(inner) => inner
                .downcast_ref::<DataFusionError>()
                .is_some_and(is_value_fault),
            _ => false,
        }
    }
    match e {
        DataFusionError::ArrowError(a, _) => arrow(a),
        DataFusionError::Execution(_) => true,
        DataFusionError::External(inner) => match inner.downcast_ref::<ArrowError>() {
            Some(a) => arrow(a),
            None => inner
                .downcast_ref::<DataFusionError>()
                .is_some_and(is_value_fault),
        },
        DataFusionError::Context(_, inner) => is_value_fault(inner),
        DataFusionError::Shared(inner) => is_value_fault(inner),
        DataFusionError::Collection(all) => all.iter().any(is_value_fault),
        _ => false,
    }
}

impl From<DataFusionError> for Error {
    fn from(e: DataFusionError) -> Self {
        Error::DataFusion(Box::new(e))
    }
}

impl From<Error> for DataFusionError {
    fn from(e: Error) -> Self {
        match e {
            Error::DataFusion(inner) => *inner,
            other => DataFusionError::External(Box::new(other)),
        }
    }
}

impl From<datafusion::arrow::error::ArrowError> for Error {
    fn from(e: datafusion::arrow::error::ArrowError) -> Self {
        Error::DataFusion(Box::new(DataFusionError::ArrowError(Box::new(e), None)))
    }
}

impl From<datafusion::parquet::errors::ParquetError> for Error {
    fn from(e: datafusion::parquet::errors::ParquetError) -> Self {
        Error::DataFusion(Box::new(DataFusionError::ParquetError(Box::new(e))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn df() -> Box<DataFusionError> {
        Box::new(DataFusionError::Plan("no such column".into()))
    }

    #[test]
    fn exit_codes_follow_the_spec() {
        let s = || String::from("x");
        let cases: Vec<(Error, i32)> = vec![
            (Error::Argument(s()), 2),
            (
                Error::UnknownStep {
                    flag: s(),
                    step: s(),
                    steps: s(),
                },
                2,
            ),
            (Error::Query(s()), 2),
            (Error::param("time_unit", "must be day or week"), 2),
            (Error::job("a.toml", "bad"), 2),
            (Error::url("ftp://x/", "unsupported"), 2),
            (
                Error::Env {
                    var: s(),
                    message: s(),
                },
                2,
            ),
            (
                Error::InputSchema {
                    input: s(),
                    url: s(),
                    message: s(),
                },
                2,
            ),
            (
                Error::InputData {
                    input: s(),
                    file: s(),
                    message: s(),
                },
                2,
            ),
            (
                Error::InputOption {
                    input: s(),
                    option: s(),
                    value: s(),
                    message: s(),
                },
                2,
            ),
            (
                Error::MappingValue {
                    input: s(),
                    url: s(),
                    column: s(),
                    expression: s(),
                    message: s(),
                },
                2,
            ),
            (
                Error::InvalidStep {
                    step: s(),
                    file: s(),
                    source: df(),
                },
                2,
            ),
            (
                Error::Step {
                    step: s(),
                    file: s(),
                    source: df(),
                },
                1,
            ),
            (
                Error::Gate {
                    gate: s(),
                    message: s(),
                    evidence: serde_json::Value::Null,
                },
                3,
            ),
            (
                Error::FileExists {
                    path: "job.toml".into(),
                },
                2,
            ),
            (Error::io("p", std::io::Error::other("x")), 1),
            (
                Error::OutputWrite {
                    url: s(),
                    message: s(),
                },
                1,
            ),
            (
                Error::DeltaCommit {
                    url: s(),
                    message: s(),
                },
                1,
            ),
            (
                Error::DeltaTable {
                    url: s(),
                    message: s(),
                },
                2,
            ),
            (
                Error::storage(
                    "s3://b/",
                    object_store::Error::Generic {
                        store: "S3",
                        source: Box::new(std::io::Error::other("x")),
                    },
                ),
                1,
            ),
            (
                Error::Conflict {
                    url: s(),
                    message: s(),
                },
                1,
            ),
            (
                Error::Cluster {
                    address: s(),
                    message: s(),
                },
                1,
            ),
            (
                Error::ClusterRefused {
                    address: s(),
                    message: s(),
                },
                1,
            ),
            (
                Error::Tls {
                    path: "ca.pem".into(),
                    message: s(),
                },
                2,
            ),
            (Error::DataFusion(df()), 1),
            (Error::Json(serde_json::from_str::<u8>("x").unwrap_err()), 1),
            (Error::Internal(s()), 1),
        ];
        for (e, code) in cases {
            assert_eq!(e.exit_code(), code, "{e:?}");
        }
    }

    #[test]
    fn custval_error_survives_a_trip_through_datafusion() {
        let df: DataFusionError = Error::Argument("bad value".into()).into();
        let back: Error = df.into();
        assert_eq!(back.exit_code(), 2);
        assert!(back.to_string().contains("bad value"));
    }
}
