//! The one error type of `lesser`, its `Result` alias, and the exit code of each failure.
//!
//! Every variant renders as a single line that names the file (or spec) and the place, so the
//! command line can print it as-is.

use std::path::{Path, PathBuf};

/// Anything that can go wrong on user input, the file system or the machine.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Reading or writing a file failed.
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// Writing to standard output failed (a full disk behind a redirect, say).
    #[error("writing to standard output: {0}")]
    Output(std::io::Error),
    /// Standard output was closed by its reader (`lesser ... | head`): not a failure.
    #[error("standard output closed")]
    BrokenPipe,
    /// A data file (IDX) is malformed.
    #[error("{}: {msg}", path.display())]
    Data { path: PathBuf, msg: String },
    /// A spec file is malformed: `place` is `line:col`, a key path, or a stack and layer.
    #[error("{}{}{place}: {msg}", path.display(), if place.is_empty() { "" } else { ":" })]
    Spec {
        path: PathBuf,
        place: String,
        msg: String,
    },
    /// Several bad specs, all reported at once (one line each).
    #[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"))]
    Specs(Vec<Error>),
    /// A request that cannot be met with the data at hand (e.g. more pairs than a pool holds).
    #[error("{0}")]
    Protocol(String),
    /// A round would need more memory than the limit allows.
    #[error("{0}")]
    Resources(String),
    /// A results or report file is malformed.
    #[error("{}: {msg}", path.display())]
    Report { path: PathBuf, msg: String },
    /// A git revision that cannot be read.
    #[error("{0}")]
    Git(String),
    /// A tensor handed to an op does not have the shape the op needs.
    #[error("shape mismatch: {0}")]
    Shape(String),
    /// Bad command-line usage not caught by clap.
    #[error("{0}")]
    Usage(String),
    /// The machine refused something it normally grants (threads).
    #[error("{0}")]
    System(String),
    /// `lesser check` found invalid specs (each already printed).
    #[error("{bad} of {total} spec files are invalid")]
    CheckFailed { bad: usize, total: usize },
}

/// `Result` with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// The process exit code for this error:
    /// - 1: a check failed (`lesser check` on invalid specs); `diff --fail-on-regression`
    ///   also exits 1 on a regression, without an error;
    /// - 2: bad usage or input (specs, data, results files, options, revisions, limits);
    /// - 3: an I/O or system failure (a file that cannot be read or written, threads).
    ///
    /// clap exits with 2 on a malformed command line, which agrees with this table.
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::CheckFailed { .. } => 1,
            Error::Data { .. }
            | Error::Spec { .. }
            | Error::Specs(_)
            | Error::Protocol(_)
            | Error::Resources(_)
            | Error::Report { .. }
            | Error::Git(_)
            | Error::Shape(_)
            | Error::Usage(_) => 2,
            Error::Io { .. } | Error::Output(_) | Error::System(_) => 3,
            Error::BrokenPipe => 0,
        }
    }

    /// Wraps an I/O error with the path it concerns.
    pub fn io(path: impl AsRef<Path>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.as_ref().to_path_buf(),
            source,
        }
    }

    /// An error writing standard output; a closed pipe is [`Error::BrokenPipe`].
    pub fn output(e: std::io::Error) -> Self {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            Error::BrokenPipe
        } else {
            Error::Output(e)
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
