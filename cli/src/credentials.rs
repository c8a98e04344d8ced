//! Registry credentials from the command line, skopeo-style: `USER:PASS` split on the *first*
//! colon (so a password may hold colons), given inline, in a file, or in an environment variable
//! (the last two keep the password out of `ps` and shell history).
//!
//! Errors name where the value came from, never the value itself.

use std::path::Path;

use regmirror::Credentials;

use crate::failure::{CliResult, Failure};

/// Where one side's credentials may come from, in order of preference.
#[derive(Debug, Clone, Copy)]
pub struct CredentialSources<'a> {
    /// The inline flag's name (`--src-creds`) and value.
    pub flag: &'a str,
    pub inline: Option<&'a str>,
    /// The file flag's name (`--src-creds-file`) and path.
    pub file_flag: &'a str,
    pub file: Option<&'a Path>,
    /// The environment variable consulted when neither flag is given, if any.
    pub env: Option<&'a str>,
}

impl CredentialSources<'_> {
    /// The credentials given, or `None` when no source has any.
    pub fn resolve(&self) -> CliResult<Option<Credentials>> {
        if let Some(value) = self.inline {
            return parse_user_pass(value, self.flag).map(Some);
        }
        if let Some(path) = self.file {
            let text = std::fs::read_to_string(path).map_err(|e| {
                Failure::invalid(format!(
                    "{}: cannot read {}: {e}",
                    self.file_flag,
                    path.display()
                ))
            })?;
            // Editors and `echo` add a line ending; it is never part of the password.
            let value = text
                .strip_suffix('\n')
                .map(|t| t.strip_suffix('\r').unwrap_or(t))
                .unwrap_or(&text);
            let from = format!("{} {}", self.file_flag, path.display());
            return parse_user_pass(value, &from).map(Some);
        }
        let Some(env) = self.env else {
            return Ok(None);
        };
        match std::env::var(env) {
            Ok(value) if !value.is_empty() => parse_user_pass(&value, env).map(Some),
            _ => Ok(None),
        }
    }
}

/// Split `USER:PASS` on the first colon. `from` names where the value came from.
pub fn parse_user_pass(value: &str, from: &str) -> CliResult<Credentials> {
    let Some((user, password)) = value.split_once(':') else {
        // skopeo prompts for the password of a bare USER; a tool run by scripts and
        // services cannot.
        return Err(
            Failure::invalid(format!("{from}: expected USER:PASS, but there is no colon")).hint(
                "regmirror does not prompt for a password: give USER:PASSWORD, preferably from a \
             file or an environment variable (out of the process list)",
            ),
        );
    };
    if user.is_empty() {
        return Err(Failure::invalid(format!(
            "{from}: the username before the first colon is empty"
        )));
    }
    Ok(Credentials::new(user, password))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sources<'a>(inline: Option<&'a str>, file: Option<&'a Path>) -> CredentialSources<'a> {
        CredentialSources {
            flag: "--src-creds",
            inline,
            file_flag: "--src-creds-file",
            file,
            env: Some("REGMIRROR_TEST_UNSET_CREDS"),
        }
    }

    #[test]
    fn splits_on_the_first_colon() {
        let c = parse_user_pass("robot$mirror:pa:ss:$'\"; ü", "--src-creds").unwrap();
        assert_eq!(c.username, "robot$mirror");
        assert_eq!(c.password, "pa:ss:$'\"; ü");
        let c = parse_user_pass("user:", "--src-creds").unwrap();
        assert_eq!(c.password, "");
    }

    #[test]
    fn errors_never_echo_the_value() {
        for value in ["no-colon-secret", ":only-secret"] {
            let e = parse_user_pass(value, "--dest-creds")
                .unwrap_err()
                .to_string();
            assert!(e.starts_with("--dest-creds: "), "{e}");
            assert!(!e.contains("secret"), "{e}");
        }
    }

    #[test]
    fn a_file_loses_its_line_ending_only() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("creds");
        std::fs::write(&path, "u:p w \r\n").unwrap();
        let c = sources(None, Some(&path)).resolve().unwrap().unwrap();
        assert_eq!(c.password, "p w ");
        assert_eq!(sources(None, None).resolve().unwrap(), None);
        let missing = dir.path().join("absent");
        let e = sources(None, Some(&missing)).resolve().unwrap_err();
        assert!(
            e.to_string().contains("--src-creds-file: cannot read"),
            "{e}"
        );
    }
}
