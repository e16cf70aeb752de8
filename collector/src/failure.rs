//! The error a command ends with: one line and an exit code.

/// A command's failure: printed as `memcollect: <message>`, then the process exits with `code`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// What went wrong, in one line.
    pub message: String,
    /// The exit code.
    pub code: i32,
}

impl Failure {
    /// A failure with exit code 1.
    pub fn new(message: impl Into<String>) -> Self {
        Failure::with_code(message, 1)
    }

    /// A failure with a specific exit code.
    pub fn with_code(message: impl Into<String>, code: i32) -> Self {
        Failure {
            message: message.into(),
            code,
        }
    }
}

impl From<String> for Failure {
    fn from(message: String) -> Self {
        Failure::new(message)
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Failure {}
