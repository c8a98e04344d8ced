//! Why a command stopped, and the exit status that tells a script so: 2 for input the user must
//! fix (bad arguments, config, patterns or references), 1 for everything that went wrong while
//! working (a tag failed, a registry or the state store refused).
//!
//! The message is one line naming what was wrong; the hint, when there is one, says what to do.
//! Neither ever holds a secret: messages are built from `regmirror::Error` (which keeps secrets
//! out) and from argument *names*, never argument values that could be credentials.

use std::fmt;
use std::process::ExitCode;

use regmirror::{Error, ErrorKind};

/// Exit status when the run worked but a tag (or the whole run) failed.
pub const EXIT_FAILED: u8 = 1;
/// Exit status for invalid input, as clap uses for usage errors.
pub const EXIT_INVALID: u8 = 2;

/// A command's error: one line, an optional hint, and the exit status.
#[derive(Debug)]
pub struct Failure {
    message: String,
    hint: Option<String>,
    status: u8,
    /// Stopped by a signal (Ctrl-C, SIGTERM) rather than by something going wrong.
    cancelled: bool,
}

impl Failure {
    /// Input the user must fix (exit status 2).
    pub fn invalid(message: impl Into<String>) -> Self {
        Failure {
            message: message.into(),
            hint: None,
            status: EXIT_INVALID,
            cancelled: false,
        }
    }

    /// Something failed while working (exit status 1).
    pub fn failed(message: impl Into<String>) -> Self {
        Failure {
            message: message.into(),
            hint: None,
            status: EXIT_FAILED,
            cancelled: false,
        }
    }

    /// Say what to do about it.
    #[must_use]
    pub fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    /// Prefix the message with what was being done.
    #[must_use]
    pub fn context(mut self, context: impl fmt::Display) -> Self {
        self.message = format!("{context}: {}", self.message);
        self
    }

    pub fn exit_code(&self) -> ExitCode {
        ExitCode::from(self.status)
    }

    /// The `outcome` a script reads: `invalid` input, a `cancelled` run (as a sync report says
    /// it), or `failed`.
    fn outcome(&self) -> &'static str {
        if self.status == EXIT_INVALID {
            "invalid"
        } else if self.cancelled {
            "cancelled"
        } else {
            "failed"
        }
    }

    /// This failure as `--json` output: a command that asked for JSON gets JSON on stdout even
    /// when it stops before it has a report.
    pub fn json(&self) -> serde_json::Value {
        serde_json::json!({
            "outcome": self.outcome(),
            "error": self.message,
            "hint": self.hint,
            "exit_status": self.status,
        })
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)?;
        if let Some(hint) = &self.hint {
            write!(f, " ({hint})")?;
        }
        Ok(())
    }
}

impl From<Error> for Failure {
    fn from(e: Error) -> Self {
        let status = match e.kind() {
            ErrorKind::InvalidConfig | ErrorKind::InvalidPattern | ErrorKind::InvalidReference => {
                EXIT_INVALID
            }
            _ => EXIT_FAILED,
        };
        let hint = match e.kind() {
            ErrorKind::Unauthorized => Some("check the registry credentials"),
            ErrorKind::Tls => Some(
                "trust the registry's CA certificate, or turn TLS verification off for that registry",
            ),
            ErrorKind::Network => Some("check that the registry is running and reachable"),
            _ => None,
        };
        Failure {
            // The kind prefix is for programs; people read the message.
            message: e.message().to_owned(),
            hint: hint.map(str::to_owned),
            status,
            cancelled: e.kind() == ErrorKind::Cancelled,
        }
    }
}

/// `Result` with a [`Failure`].
pub type CliResult<T> = Result<T, Failure>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn input_errors_exit_2_and_the_rest_exit_1() {
        let invalid = Failure::from(Error::new(ErrorKind::InvalidPattern, "v3.[12: unclosed"));
        assert_eq!(invalid.status, EXIT_INVALID);
        let failed = Failure::from(Error::new(ErrorKind::Network, "connection refused"));
        assert_eq!(failed.status, EXIT_FAILED);
        assert_eq!(
            failed.to_string(),
            "connection refused (check that the registry is running and reachable)"
        );
        assert_eq!((invalid.outcome(), failed.outcome()), ("invalid", "failed"));
        let stopped = Failure::from(Error::new(ErrorKind::Cancelled, "the sync was cancelled"))
            .context("planning the sync");
        assert_eq!(
            (stopped.status, stopped.outcome()),
            (EXIT_FAILED, "cancelled")
        );
    }
}
