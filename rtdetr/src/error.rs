use std::path::PathBuf;

use crate::LoadError;

/// What can go wrong in this crate: loading weights, reading datasets, training, evaluating.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Weights that do not load.
    #[error(transparent)]
    Load(#[from] LoadError),
    /// Options that do not fit the weights or each other.
    #[error("{0}")]
    Options(String),
    /// A variant name other than s, m, l or xl.
    #[error("unknown variant {0:?} (expected s, m, l or xl)")]
    UnknownVariant(String),
    /// A weights header or tensor set that does not describe a model.
    #[error("{0}")]
    Weights(String),
    /// A dataset, label file or image that cannot be used.
    #[error("{0}")]
    Data(String),
    /// A saved run that cannot be resumed or written.
    #[error("{0}")]
    Run(String),
    /// Training that cannot go on (a non-finite loss, a requested stop).
    #[error("{0}")]
    Training(String),
    /// Inputs to the evaluator that do not fit together.
    #[error("evaluation: {0}")]
    Eval(String),
    /// A tensor operation failed.
    #[error(transparent)]
    Candle(#[from] candle::Error),
    /// Reading or writing a file failed.
    #[error(transparent)]
    Io(#[from] std::io::Error),
    /// Any of the above, with the file it happened in.
    #[error("{}: {problem}", path.display())]
    InFile {
        /// The file.
        path: PathBuf,
        /// What went wrong (in the message, not a separate cause, so it prints as one line).
        problem: Box<Error>,
    },
}

impl Error {
    /// Attaches the file name (once).
    pub fn in_file(self, path: impl Into<PathBuf>) -> Self {
        match self {
            e @ Error::InFile { .. } => e,
            e => Error::InFile {
                path: path.into(),
                problem: Box::new(e),
            },
        }
    }

    /// The problem alone, without the file it was attached to (for reports that name the file
    /// themselves).
    pub fn without_file(&self) -> &Error {
        match self {
            Error::InFile { problem, .. } => problem,
            e => e,
        }
    }
}

/// `Result` with this crate's [`Error`].
pub type Result<T> = std::result::Result<T, Error>;
