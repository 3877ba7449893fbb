//! Typed errors, split by who is at fault: the input file, this build, the caller, a model,
//! llif itself, or the environment. [`Error::kind`] names the fault; the CLI maps each kind to
//! its own exit code.

use std::path::PathBuf;

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in llif. Library functions never panic on bad input; they
/// return one of these.
///
/// The enum is `#[non_exhaustive]`: later versions add variants (new families bring new ways to
/// fail), so match on [`Error::kind`] where only the class of fault matters.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
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
    /// The file (or a model file) is of a codec family this build does not implement: a newer
    /// llif, or a build with the family left out, can read it.
    #[error(
        "unsupported codec family {0}: this build of llif cannot decode it (a newer version may)"
    )]
    UnsupportedFamily(String),
    /// An archive of a newer archive version or mode (e.g. chained entries) than this build reads.
    #[error("unsupported llif archive: {0}")]
    UnsupportedArchive(String),
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
    /// A request the codec cannot serve (e.g. an input format llif does not take).
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

    /// The caller cancelled the operation (through [`crate::DecodeControl`]).
    #[error("cancelled")]
    Cancelled,

    // ---- llif itself ----
    /// A broken invariant inside llif (e.g. a model schedule that skipped a sample): a bug to
    /// report, never the input's or the caller's fault.
    #[error("internal error (a bug in llif, please report it): {0}")]
    Internal(String),

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

/// Who is at fault, for callers that react by class (and for the CLI's exit codes).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The input is damaged or not llif at all.
    CorruptInput,
    /// A valid input this build cannot handle: newer format version, unknown family or model.
    Unsupported,
    /// The input is larger than the caller's [`crate::Limits`] allow.
    LimitExceeded,
    /// A bad argument, image buffer or request.
    Caller,
    /// A model file that cannot be used, or a failure inside libtorch.
    Model,
    /// The caller cancelled it.
    Cancelled,
    /// A bug in llif.
    Internal,
    /// I/O and other failures of the environment.
    Environment,
}

impl Error {
    /// The same error, its message prefixed with `context` (say, which image of a batch it is
    /// about), its kind unchanged. Errors without a message of their own are returned as they
    /// are.
    pub fn with_context(self, context: &str) -> Error {
        let p = |s: String| format!("{context}: {s}");
        match self {
            Error::InvalidHeader(s) => Error::InvalidHeader(p(s)),
            Error::CorruptPayload(s) => Error::CorruptPayload(p(s)),
            Error::UnsupportedArchive(s) => Error::UnsupportedArchive(p(s)),
            Error::UnsupportedFamily(s) => Error::UnsupportedFamily(p(s)),
            Error::UnknownModel(s) => Error::UnknownModel(p(s)),
            Error::LimitExceeded(s) => Error::LimitExceeded(p(s)),
            Error::InvalidImage(s) => Error::InvalidImage(p(s)),
            Error::Unsupported(s) => Error::Unsupported(p(s)),
            Error::Usage(s) => Error::Usage(p(s)),
            Error::InvalidModel(s) => Error::InvalidModel(p(s)),
            Error::Internal(s) => Error::Internal(p(s)),
            Error::Failed(s) => Error::Failed(p(s)),
            Error::ImageFile(s) => Error::ImageFile(p(s)),
            Error::Truncated(what) => Error::CorruptPayload(p(format!("truncated: {what}"))),
            Error::ChecksumMismatch { expected, actual } => Error::CorruptPayload(p(format!(
                "checksum mismatch: decoded pixels have CRC-32 {actual:08x}, the file says {expected:08x}"
            ))),
            other => other,
        }
    }

    /// The class of fault.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::BadMagic
            | Error::Truncated(_)
            | Error::InvalidHeader(_)
            | Error::CorruptPayload(_)
            | Error::ChecksumMismatch { .. } => ErrorKind::CorruptInput,
            Error::UnsupportedVersion(_)
            | Error::UnsupportedArchive(_)
            | Error::UnsupportedFamily(_)
            | Error::UnknownModel(_) => ErrorKind::Unsupported,
            Error::LimitExceeded(_) => ErrorKind::LimitExceeded,
            Error::InvalidImage(_) | Error::Unsupported(_) | Error::Usage(_) => ErrorKind::Caller,
            Error::InvalidModel(_) | Error::Torch(_) => ErrorKind::Model,
            Error::Cancelled => ErrorKind::Cancelled,
            Error::Internal(_) => ErrorKind::Internal,
            Error::Io { .. } | Error::IoOther(_) | Error::Failed(_) | Error::ImageFile(_) => {
                ErrorKind::Environment
            }
        }
    }

    /// Attaches a path to an I/O error.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }

    /// True when the error says the input file is damaged or not llif at all.
    pub fn is_corrupt_input(&self) -> bool {
        self.kind() == ErrorKind::CorruptInput
    }
}

#[cfg(feature = "torch")]
impl From<tch::TchError> for Error {
    fn from(e: tch::TchError) -> Self {
        Error::Torch(e.to_string())
    }
}
