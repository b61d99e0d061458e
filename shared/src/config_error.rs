//! The one line a process prints for a setting it refuses, e.g. `WATI_API_KEY not
//! configured`. Its own module, so that every settings module (`config`, `budget`) can
//! use it without importing the other.

/// Shortest accepted key for `JWT_SECRET` and `OTP_SECRET`, in bytes.
pub const MIN_SECRET_BYTES: usize = 32;
/// Fewest different bytes in such a key: 32 random hex digits hold about 14, while
/// `aaaa…` or `abababab…` pass the length check with 1 or 2.
pub const MIN_SECRET_DISTINCT_BYTES: usize = 10;

/// A setting that is missing or wrong; its message is the one line a process prints.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    #[error("{0} not configured")]
    Missing(&'static str),
    #[error("{0} must be at least {MIN_SECRET_BYTES} bytes")]
    SecretTooShort(&'static str),
    #[error(
        "{0} has too little variety (at least {MIN_SECRET_DISTINCT_BYTES} different characters): use a random secret, e.g. `openssl rand -hex 32`"
    )]
    SecretTooPlain(&'static str),
    #[error("{name} {problem}")]
    Invalid {
        name: &'static str,
        problem: &'static str,
    },
    /// A setting that names something unusable, e.g. a key file that cannot be read.
    #[error("{name} {detail}")]
    Unusable { name: &'static str, detail: String },
}
