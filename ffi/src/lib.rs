//! The C ABI of regmirror (`include/regmirror.h`), in the style of rustls-ffi.
//!
//! - Handles are opaque (`regmirror_tag_filter *`, `regmirror_mirror *`, `regmirror_mirrors *`,
//!   `regmirror_worker *`, `regmirror_cancel *`), made by `_new` (or a builder's `_build` /
//!   `_open`, or `regmirror_worker_start`) and released by `_free` (`regmirror_worker_stop`);
//!   `_free(NULL)` does nothing.
//! - Everything structured crosses as JSON text with the core's serde names (the CLI's
//!   `--json` names): mirror settings in, views, reports, previews, logs and events out.
//! - Every fallible function returns a [`regmirror_result`]; outputs go through pointer
//!   parameters and are written only on success.
//! - Every export runs inside one guard ([`guard::guard`]) that turns NULL arguments, invalid
//!   UTF-8 and panics into result codes; no panic crosses the boundary. After a failure,
//!   `regmirror_last_error_message()` says what was wrong, on the thread that called.
//!
//! The header is generated from these sources by cbindgen (`cbindgen.toml`); `scripts/test.sh`
//! fails when the checked-in header is out of date.

// The Rust names of exported types are their C names.
#![allow(non_camel_case_types)]

mod callback;
mod cancel;
mod guard;
mod mirror;
mod mirrors;
mod result_code;
mod run;
mod strings;
mod tag_filter;
mod version;
mod worker;

pub use callback::regmirror_event_callback;
pub use cancel::{
    regmirror_cancel, regmirror_cancel_cancel, regmirror_cancel_free,
    regmirror_cancel_is_cancelled, regmirror_cancel_new,
};
pub use guard::regmirror_last_error_message;
pub use mirror::{
    regmirror_mirror, regmirror_mirror_builder, regmirror_mirror_builder_build,
    regmirror_mirror_builder_free, regmirror_mirror_builder_new,
    regmirror_mirror_builder_set_dest_credentials, regmirror_mirror_builder_set_keep_unselected,
    regmirror_mirror_builder_set_source_credentials, regmirror_mirror_builder_set_tls_verify,
    regmirror_mirror_free, regmirror_mirror_sync,
};
pub use mirrors::{regmirror_mirrors, regmirror_mirrors_builder};
pub use result_code::{regmirror_result, regmirror_result_name};
pub use strings::regmirror_string_free;
pub use tag_filter::{
    regmirror_tag_filter, regmirror_tag_filter_free, regmirror_tag_filter_matches,
    regmirror_tag_filter_new, regmirror_tag_filter_select,
};
pub use version::{
    REGMIRROR_VERSION_MAJOR, REGMIRROR_VERSION_MINOR, REGMIRROR_VERSION_PATCH, regmirror_version,
};
pub use worker::{regmirror_worker, regmirror_worker_settings};
