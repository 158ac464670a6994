//! Why an image's evidence could not be gathered: the error side of
//! [`super::ImageEvidence`], as the pure evaluation receives it. Sources
//! (the registry) convert their own errors into it, keeping their words;
//! the core knows no source.

/// Why an image could not be looked up.
#[derive(Clone, Debug, thiserror::Error, PartialEq)]
pub enum LookupError {
    /// The source refused the login tried (another one may be accepted).
    #[error("authentication failed at registry {registry} for repository {repository} ({status}) with {with}")]
    Unauthorized { registry: String, repository: String, status: u16, with: String },
    /// The source could not answer (unreachable, not found, too large,
    /// malformed...), in its own words.
    #[error("{0}")]
    Source(String),
    /// Every credential tried was refused.
    #[error("{0}")]
    Refused(String),
    #[error("internal error while looking the image up: {0}")]
    Internal(String),
    #[error("the registry did not answer before the admission deadline")]
    Deadline,
}

impl LookupError {
    /// The login was refused: worth trying the next one.
    pub fn unauthorized(&self) -> bool {
        matches!(self, LookupError::Unauthorized { .. })
    }
}
