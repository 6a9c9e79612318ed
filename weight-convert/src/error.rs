use std::path::PathBuf;

/// Why a weights file could not be read or converted.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The file ends before the structure it declares.
    #[error("truncated: {0}")]
    Truncated(String),
    /// The bytes are not what the format requires.
    #[error("malformed: {0}")]
    Malformed(String),
    /// A declared size, count or nesting depth is beyond what the file can hold or the reader allows.
    #[error("limit exceeded: {0}")]
    Limit(String),
    /// Valid, but not something this reader handles.
    #[error("unsupported: {0}")]
    Unsupported(String),
    /// The content was read but its tensor names do not map onto ours.
    #[error("{0}")]
    Mapping(String),
    /// The download failed.
    #[error("download: {0}")]
    Hub(String),
    /// A tensor operation failed.
    #[error(transparent)]
    Candle(#[from] candle::Error),
    /// Reading the file failed.
    #[error(transparent)]
    Io(#[from] std::io::Error),
    /// Any of the above, with the file it happened in.
    #[error("{}: {problem}", path.display())]
    InFile {
        /// The input file.
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
}

/// `Result` with this crate's [`Error`].
pub type Result<T> = std::result::Result<T, Error>;
