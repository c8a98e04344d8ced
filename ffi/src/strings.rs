//! Strings regmirror hands to C, and the one way to give them back.

use std::ffi::{CString, c_char};

use serde::Serialize;

use crate::guard::{self, Failure};

/// A Rust string as a C string the caller owns (freed with `regmirror_string_free`).
pub(crate) fn to_owned_c(s: String) -> Result<*mut c_char, Failure> {
    // Tags and patterns cannot contain NUL (they came in as C strings), so this only fails on a bug.
    let c = CString::new(s)
        .map_err(|e| Failure::internal(format!("output string contains NUL: {e}")))?;
    Ok(c.into_raw())
}

/// `value` as a JSON C string the caller owns (freed with `regmirror_string_free`).
pub(crate) fn json(value: &impl Serialize) -> Result<*mut c_char, Failure> {
    let json = serde_json::to_string(value)
        .map_err(|e| Failure::internal(format!("serializing to JSON: {e}")))?;
    to_owned_c(json)
}

/// Free a string returned by regmirror (for example by `regmirror_tag_filter_select`).
/// `NULL` does nothing.
///
/// # Safety
/// `s` is NULL or a string regmirror returned that has not been freed yet.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn regmirror_string_free(s: *mut c_char) {
    if s.is_null() {
        return;
    }
    guard::guard(|| {
        // SAFETY: the caller passes a pointer made by CString::into_raw, exactly once.
        drop(unsafe { CString::from_raw(s) });
        Ok(())
    });
}
