//! The one error type of custval: every variant carries the file, URL, column or
//! value it is about, and maps to the exit code of SPEC.md.

use std::path::PathBuf;

use datafusion::error::DataFusionError;

/// Result alias used across the library.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can stop a custval command.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Bad command-line arguments (exit 2).
    #[error("invalid argument: {0}")]
    Usage(String),

    /// The job file is unreadable or invalid (exit 2).
    #[error("job file {path}: {message}")]
    Job { path: PathBuf, message: String },

    /// An input's schema does not fit the job (exit 2).
    #[error("input {input} ({url}): {message}")]
    InputSchema {
        input: String,
        url: String,
        message: String,
    },

    /// A SQL step does not parse or plan (exit 2 from `check`, exit 1 at run time).
    #[error("step {step} ({file}): {source}")]
    Step {
        step: String,
        file: String,
        #[source]
        source: Box<DataFusionError>,
    },

    /// A data-quality gate failed (exit 3). Nothing was published.
    #[error("data-quality gate {gate} failed: {message}")]
    Gate { gate: String, message: String },

    /// Local file-system failure (exit 1).
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// Object-store failure (exit 1). The URL never carries credentials.
    #[error("storage {url}: {source}")]
    Storage {
        url: String,
        #[source]
        source: Box<object_store::Error>,
    },

    /// A partition is being published by another run (exit 1).
    #[error("{url}: {message}")]
    Conflict { url: String, message: String },

    /// A Ballista scheduler or executor could not start or be reached (exit 1).
    #[error("cluster {address}: {message}")]
    Cluster { address: String, message: String },

    /// Engine failure (exit 1).
    #[error(transparent)]
    DataFusion(Box<DataFusionError>),

    /// A bug or an impossible state (exit 1).
    #[error("internal error: {0}")]
    Internal(String),
}

impl Error {
    /// Exit code of SPEC.md: 1 run failed, 2 invalid arguments/job/schema, 3 gate.
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Usage(_) | Error::Job { .. } | Error::InputSchema { .. } => 2,
            Error::Gate { .. } => 3,
            Error::DataFusion(e) => match find_custval_error(e) {
                Some(inner) => inner.exit_code(),
                None => 1,
            },
            _ => 1,
        }
    }

    /// Shorthand for a job-file error.
    pub fn job(path: impl Into<PathBuf>, message: impl Into<String>) -> Self {
        Error::Job {
            path: path.into(),
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

    #[test]
    fn exit_codes_follow_the_spec() {
        assert_eq!(Error::Usage("x".into()).exit_code(), 2);
        assert_eq!(Error::job("a.toml", "bad").exit_code(), 2);
        let gate = Error::Gate {
            gate: "g".into(),
            message: "m".into(),
        };
        assert_eq!(gate.exit_code(), 3);
        assert_eq!(Error::Internal("x".into()).exit_code(), 1);
    }

    #[test]
    fn custval_error_survives_a_trip_through_datafusion() {
        let df: DataFusionError = Error::Usage("bad value".into()).into();
        let back: Error = df.into();
        assert_eq!(back.exit_code(), 2);
        assert!(back.to_string().contains("bad value"));
    }
}
