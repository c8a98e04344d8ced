//! `regmirror_result`: the numbered outcome of every fallible call, one code per
//! [`engine::ErrorKind`] plus the failures only a C caller can cause.

use std::ffi::{CStr, c_char};

use engine::ErrorKind;

/// The outcome of a call. `REGMIRROR_OK` is 0; the numbers are stable and never reused.
/// Codes 1-99 are ABI-level failures; codes from 100 are regmirror's error kinds.
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum regmirror_result {
    /// Success.
    REGMIRROR_OK = 0,
    /// A pointer argument that must not be NULL was NULL.
    REGMIRROR_NULL_ARGUMENT = 1,
    /// A string argument was not valid UTF-8.
    REGMIRROR_INVALID_UTF8 = 2,
    /// regmirror panicked (a bug); the panic was caught at the boundary.
    REGMIRROR_PANIC = 3,
    /// A mirror or engine setting is invalid.
    REGMIRROR_INVALID_CONFIG = 100,
    /// A tag pattern is invalid.
    REGMIRROR_INVALID_PATTERN = 101,
    /// A registry, repository, tag or digest reference is malformed.
    REGMIRROR_INVALID_REFERENCE = 102,
    /// The registry refused the credentials.
    REGMIRROR_UNAUTHORIZED = 103,
    /// Authenticated, but not allowed.
    REGMIRROR_FORBIDDEN = 104,
    /// The repository, tag, manifest, blob or mirror does not exist.
    REGMIRROR_NOT_FOUND = 105,
    /// Content did not hash to the digest (or size) it claimed.
    REGMIRROR_DIGEST_MISMATCH = 106,
    /// A manifest could not be parsed, or breaks a limit.
    REGMIRROR_INVALID_MANIFEST = 107,
    /// Valid, but not handled by regmirror.
    REGMIRROR_UNSUPPORTED = 108,
    /// The registry asked to slow down and retries ran out.
    REGMIRROR_RATE_LIMITED = 109,
    /// A network failure after retries.
    REGMIRROR_NETWORK = 110,
    /// An operation took longer than allowed.
    REGMIRROR_TIMEOUT = 111,
    /// The TLS handshake or certificate verification failed.
    REGMIRROR_TLS = 112,
    /// The operation conflicts with the current state.
    REGMIRROR_CONFLICT = 113,
    /// The run was cancelled.
    REGMIRROR_CANCELLED = 114,
    /// The state store failed.
    REGMIRROR_STATE = 115,
    /// A local filesystem error.
    REGMIRROR_IO = 116,
    /// A bug inside regmirror.
    REGMIRROR_INTERNAL = 117,
}

use regmirror_result::*;

// Every error kind has its own code: a kind added in core fails to compile here until it gets
// one (in the enum, ALL and `from_kind`) instead of reaching C as REGMIRROR_INTERNAL.
const _: () = assert!(
    regmirror_result::ALL.len() - regmirror_result::NOT_KINDS == ErrorKind::ALL.len(),
    "every ErrorKind needs its own regmirror_result code"
);

impl regmirror_result {
    /// Every code, for `regmirror_result_name` (which takes a plain integer, so an unknown
    /// number from C is never turned into an invalid enum value).
    const ALL: [regmirror_result; 22] = [
        REGMIRROR_OK,
        REGMIRROR_NULL_ARGUMENT,
        REGMIRROR_INVALID_UTF8,
        REGMIRROR_PANIC,
        REGMIRROR_INVALID_CONFIG,
        REGMIRROR_INVALID_PATTERN,
        REGMIRROR_INVALID_REFERENCE,
        REGMIRROR_UNAUTHORIZED,
        REGMIRROR_FORBIDDEN,
        REGMIRROR_NOT_FOUND,
        REGMIRROR_DIGEST_MISMATCH,
        REGMIRROR_INVALID_MANIFEST,
        REGMIRROR_UNSUPPORTED,
        REGMIRROR_RATE_LIMITED,
        REGMIRROR_NETWORK,
        REGMIRROR_TIMEOUT,
        REGMIRROR_TLS,
        REGMIRROR_CONFLICT,
        REGMIRROR_CANCELLED,
        REGMIRROR_STATE,
        REGMIRROR_IO,
        REGMIRROR_INTERNAL,
    ];

    /// The codes that are not error kinds: `REGMIRROR_OK` and the ABI-level failures (1-99).
    const NOT_KINDS: usize = 4;

    /// The one place error kinds become C codes.
    pub(crate) fn from_kind(kind: ErrorKind) -> Self {
        match kind {
            ErrorKind::InvalidConfig => REGMIRROR_INVALID_CONFIG,
            ErrorKind::InvalidPattern => REGMIRROR_INVALID_PATTERN,
            ErrorKind::InvalidReference => REGMIRROR_INVALID_REFERENCE,
            ErrorKind::Unauthorized => REGMIRROR_UNAUTHORIZED,
            ErrorKind::Forbidden => REGMIRROR_FORBIDDEN,
            ErrorKind::NotFound => REGMIRROR_NOT_FOUND,
            ErrorKind::DigestMismatch => REGMIRROR_DIGEST_MISMATCH,
            ErrorKind::InvalidManifest => REGMIRROR_INVALID_MANIFEST,
            ErrorKind::Unsupported => REGMIRROR_UNSUPPORTED,
            ErrorKind::RateLimited => REGMIRROR_RATE_LIMITED,
            ErrorKind::Network => REGMIRROR_NETWORK,
            ErrorKind::Timeout => REGMIRROR_TIMEOUT,
            ErrorKind::Tls => REGMIRROR_TLS,
            ErrorKind::Conflict => REGMIRROR_CONFLICT,
            ErrorKind::Cancelled => REGMIRROR_CANCELLED,
            ErrorKind::State => REGMIRROR_STATE,
            ErrorKind::Io => REGMIRROR_IO,
            ErrorKind::Internal => REGMIRROR_INTERNAL,
            // ErrorKind is non-exhaustive, so this arm must exist; the assertion on the number
            // of codes and the test below keep it unreachable.
            _ => REGMIRROR_INTERNAL,
        }
    }

    fn name(self) -> &'static CStr {
        match self {
            REGMIRROR_OK => c"REGMIRROR_OK",
            REGMIRROR_NULL_ARGUMENT => c"REGMIRROR_NULL_ARGUMENT",
            REGMIRROR_INVALID_UTF8 => c"REGMIRROR_INVALID_UTF8",
            REGMIRROR_PANIC => c"REGMIRROR_PANIC",
            REGMIRROR_INVALID_CONFIG => c"REGMIRROR_INVALID_CONFIG",
            REGMIRROR_INVALID_PATTERN => c"REGMIRROR_INVALID_PATTERN",
            REGMIRROR_INVALID_REFERENCE => c"REGMIRROR_INVALID_REFERENCE",
            REGMIRROR_UNAUTHORIZED => c"REGMIRROR_UNAUTHORIZED",
            REGMIRROR_FORBIDDEN => c"REGMIRROR_FORBIDDEN",
            REGMIRROR_NOT_FOUND => c"REGMIRROR_NOT_FOUND",
            REGMIRROR_DIGEST_MISMATCH => c"REGMIRROR_DIGEST_MISMATCH",
            REGMIRROR_INVALID_MANIFEST => c"REGMIRROR_INVALID_MANIFEST",
            REGMIRROR_UNSUPPORTED => c"REGMIRROR_UNSUPPORTED",
            REGMIRROR_RATE_LIMITED => c"REGMIRROR_RATE_LIMITED",
            REGMIRROR_NETWORK => c"REGMIRROR_NETWORK",
            REGMIRROR_TIMEOUT => c"REGMIRROR_TIMEOUT",
            REGMIRROR_TLS => c"REGMIRROR_TLS",
            REGMIRROR_CONFLICT => c"REGMIRROR_CONFLICT",
            REGMIRROR_CANCELLED => c"REGMIRROR_CANCELLED",
            REGMIRROR_STATE => c"REGMIRROR_STATE",
            REGMIRROR_IO => c"REGMIRROR_IO",
            REGMIRROR_INTERNAL => c"REGMIRROR_INTERNAL",
        }
    }
}

/// The name of a result code (`"REGMIRROR_INVALID_PATTERN"`), or `"REGMIRROR_UNKNOWN"` for a
/// number that is not a code. The string is static: never free it.
#[unsafe(no_mangle)]
pub extern "C" fn regmirror_result_name(code: u32) -> *const c_char {
    regmirror_result::ALL
        .iter()
        .find(|r| **r as u32 == code)
        .map_or(c"REGMIRROR_UNKNOWN", |r| r.name())
        .as_ptr()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_has_its_own_name_and_number() {
        let mut numbers: Vec<u32> = regmirror_result::ALL.iter().map(|r| *r as u32).collect();
        numbers.sort_unstable();
        numbers.dedup();
        assert_eq!(numbers.len(), regmirror_result::ALL.len());
        for r in regmirror_result::ALL {
            let name = unsafe { CStr::from_ptr(regmirror_result_name(r as u32)) };
            assert_eq!(name.to_str().unwrap(), format!("{r:?}"));
        }
        let unknown = unsafe { CStr::from_ptr(regmirror_result_name(99)) };
        assert_eq!(unknown, c"REGMIRROR_UNKNOWN");
    }

    #[test]
    fn every_error_kind_has_its_own_code_named_after_it() {
        let mut codes = Vec::new();
        for kind in ErrorKind::ALL {
            let code = regmirror_result::from_kind(*kind);
            assert!(code as u32 >= 100, "{kind} maps to an ABI-level code");
            let name = format!("{code:?}").replace('_', "");
            assert_eq!(name, format!("REGMIRROR{}", kind.as_str().to_uppercase()));
            codes.push(code as u32);
        }
        codes.sort_unstable();
        codes.dedup();
        assert_eq!(codes.len(), ErrorKind::ALL.len(), "two kinds share a code");
    }
}
