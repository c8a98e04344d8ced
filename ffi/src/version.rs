//! The library's version, for the preprocessor (`REGMIRROR_VERSION_*` in the header) and at run
//! time (`regmirror_version()`), so a program can check the library it loaded is the one it was
//! compiled against. All of it is the workspace version (Cargo.toml); a test keeps the numbers
//! here equal to it, since cbindgen can only copy literals into the header.

use std::ffi::c_char;

/// The major version of the header (and of the library it belongs to).
pub const REGMIRROR_VERSION_MAJOR: u32 = 0;
/// The minor version of the header.
pub const REGMIRROR_VERSION_MINOR: u32 = 1;
/// The patch version of the header.
pub const REGMIRROR_VERSION_PATCH: u32 = 0;

/// The version of the loaded library, such as "0.1.0": a static string, never freed.
#[unsafe(no_mangle)]
pub extern "C" fn regmirror_version() -> *const c_char {
    concat!(env!("CARGO_PKG_VERSION"), "\0").as_ptr().cast()
}

#[cfg(test)]
mod tests {
    use std::ffi::CStr;

    use super::*;

    #[test]
    fn the_version_macros_and_function_are_the_crate_version() {
        let numbers = [
            REGMIRROR_VERSION_MAJOR,
            REGMIRROR_VERSION_MINOR,
            REGMIRROR_VERSION_PATCH,
        ]
        .map(|n| n.to_string())
        .join(".");
        assert_eq!(
            numbers,
            env!("CARGO_PKG_VERSION"),
            "set REGMIRROR_VERSION_* in ffi/src/version.rs to the workspace version and regenerate the header"
        );
        // SAFETY: regmirror_version returns a static NUL-terminated string.
        let runtime = unsafe { CStr::from_ptr(regmirror_version()) };
        assert_eq!(runtime.to_str(), Ok(env!("CARGO_PKG_VERSION")));
    }
}
