//! The one error type of `lesser`, and its `Result` alias.
//!
//! Every variant renders as a single line that names the file (or spec) and the place, so the
//! command line can print it as-is. Exit codes are chosen in `cli::exit_code`.

use std::path::{Path, PathBuf};

/// Anything that can go wrong on user input or the file system.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Reading or writing a file failed.
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// A data file (IDX) is malformed.
    #[error("{}: {msg}", path.display())]
    Data { path: PathBuf, msg: String },
    /// A spec file is malformed: `place` is `line:col`, a key path, or a stack and layer.
    #[error("{}:{place}: {msg}", path.display())]
    Spec {
        path: PathBuf,
        place: String,
        msg: String,
    },
    /// A request that cannot be met with the data at hand (e.g. more pairs than a pool holds).
    #[error("{0}")]
    Protocol(String),
    /// A results or report file is malformed.
    #[error("{}: {msg}", path.display())]
    Report { path: PathBuf, msg: String },
    /// A tensor handed to an op does not have the shape the op needs.
    #[error("shape mismatch: {0}")]
    Shape(String),
    /// Bad command-line usage not caught by clap.
    #[error("{0}")]
    Usage(String),
}

/// `Result` with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// Wraps an I/O error with the path it concerns.
    pub fn io(path: impl AsRef<Path>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.as_ref().to_path_buf(),
            source,
        }
    }

    /// A data-file error.
    pub fn data(path: impl AsRef<Path>, msg: impl Into<String>) -> Self {
        Error::Data {
            path: path.as_ref().to_path_buf(),
            msg: msg.into(),
        }
    }

    /// A spec error at `place`.
    pub fn spec(path: impl AsRef<Path>, place: impl Into<String>, msg: impl Into<String>) -> Self {
        Error::Spec {
            path: path.as_ref().to_path_buf(),
            place: place.into(),
            msg: msg.into(),
        }
    }

    /// A results/report file error.
    pub fn report(path: impl AsRef<Path>, msg: impl Into<String>) -> Self {
        Error::Report {
            path: path.as_ref().to_path_buf(),
            msg: msg.into(),
        }
    }
}
