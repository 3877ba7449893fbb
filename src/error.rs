//! Typed errors, split by who is at fault: the input data, the caller, the model set, or I/O.

use std::path::PathBuf;

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in llif. Library functions never panic on bad input; they
/// return one of these.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    // ---- the input bytes are not a valid .llif file (the file's fault) ----
    /// The first bytes are not the `.llif` magic.
    #[error("not an llif file (bad magic bytes)")]
    BadMagic,
    /// The file ends before its header or payload does.
    #[error("truncated llif file: {0}")]
    Truncated(&'static str),
    /// A header field holds a value this version does not define.
    #[error("invalid llif header: {0}")]
    InvalidHeader(String),
    /// The payload did not decode to a consistent final coder state.
    #[error("corrupt llif payload: {0}")]
    CorruptPayload(String),
    /// Decoding finished but the pixels do not match the stored CRC-32.
    #[error(
        "checksum mismatch: decoded pixels have CRC-32 {actual:08x}, file says {expected:08x}"
    )]
    ChecksumMismatch { expected: u32, actual: u32 },

    // ---- valid file or request that this build cannot handle ----
    /// The file was written by a newer format version.
    #[error("unsupported llif format version {0} (this build reads version {max})", max = crate::format::FORMAT_VERSION)]
    UnsupportedVersion(u8),
    /// The file needs a model this build does not have.
    #[error("unknown model {0}: the file was written with a model this build does not have")]
    UnknownModel(String),
    /// The image is larger than the caller's [`crate::Limits`] allow.
    #[error("limit exceeded: {0}")]
    LimitExceeded(String),

    // ---- the caller's fault ----
    /// An image buffer that does not describe a valid image.
    #[error("invalid image: {0}")]
    InvalidImage(String),
    /// A request the codec cannot serve (e.g. a model that does not support a layout).
    #[error("unsupported: {0}")]
    Unsupported(String),
    /// A bad argument (CLI or API).
    #[error("{0}")]
    Usage(String),

    // ---- models ----
    /// A model file that cannot be parsed or fails its own checks.
    #[error("invalid model file: {0}")]
    InvalidModel(String),
    /// Failure inside libtorch (training, tch inference).
    #[error("torch: {0}")]
    Torch(String),

    // ---- the environment ----
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("i/o: {0}")]
    IoOther(#[from] std::io::Error),
    /// Some items of a batch operation failed (each was reported on its own).
    #[error("{0}")]
    Failed(String),
    /// An image file that the `image` crate cannot read or write.
    #[error("image file: {0}")]
    ImageFile(String),
}

impl Error {
    /// Attaches a path to an I/O error.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }

    /// True when the error says the input file is damaged or not llif at all.
    pub fn is_corrupt_input(&self) -> bool {
        matches!(
            self,
            Error::BadMagic
                | Error::Truncated(_)
                | Error::InvalidHeader(_)
                | Error::CorruptPayload(_)
                | Error::ChecksumMismatch { .. }
        )
    }
}

impl From<tch::TchError> for Error {
    fn from(e: tch::TchError) -> Self {
        Error::Torch(e.to_string())
    }
}
