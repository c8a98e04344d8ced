//! `regmirror_mirror`: one mirror from a source to a destination, synced on demand without a
//! state store ([`engine::oneshot::OneShotSync`]). Configured through a builder
//! (`regmirror_mirror_builder`), which `_build` consumes; the built mirror is immutable and may
//! be synced from several threads.

use std::ffi::c_char;
use std::sync::OnceLock;

use engine::Credentials;
use engine::engine::SyncOptions;
use engine::oneshot::{Location, OneShotSync};
use engine::registry::http::AddressGuard;

use crate::guard::{self, Failure, non_null, utf8};
use crate::result_code::regmirror_result;
use crate::strings::to_owned_c;

/// Settings for a mirror, before it is built.
#[derive(Debug)]
pub struct regmirror_mirror_builder {
    sync: OneShotSync,
}

/// A mirror, ready to sync.
#[derive(Debug)]
pub struct regmirror_mirror {
    sync: OneShotSync,
}

/// Start a mirror of `source` into `to` selecting `tags` (comma-separated patterns). `source`
/// and `to` are registry repositories (`host[:port]/path`) or OCI image layouts
/// (`oci:DIRECTORY`). `*out` receives a builder to pass to `regmirror_mirror_builder_build`
/// (or `regmirror_mirror_builder_free`).
///
/// # Safety
/// The strings are NULL or NUL-terminated; `out` is NULL or valid for a write.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn regmirror_mirror_builder_new(
    source: *const c_char,
    to: *const c_char,
    tags: *const c_char,
    out: *mut *mut regmirror_mirror_builder,
) -> regmirror_result {
    guard::guard(|| {
        // SAFETY: forwarded from this function's contract.
        let (source, to, tags) = unsafe {
            (
                utf8(source, "source")?,
                utf8(to, "to")?,
                utf8(tags, "tags")?,
            )
        };
        let out = non_null(out, "out")?;
        let sync = OneShotSync::new(source.parse::<Location>()?, to.parse()?, [tags]);
        let builder = Box::new(regmirror_mirror_builder { sync });
        // SAFETY: non-NULL and valid for a write per the contract.
        unsafe { out.write(Box::into_raw(builder)) };
        Ok(())
    })
}

/// Credentials for the source registry (`username`, `password` or token). Never shown in
/// messages or reports.
///
/// # Safety
/// `builder` is NULL or a live builder; the strings are NULL or NUL-terminated.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn regmirror_mirror_builder_set_source_credentials(
    builder: *mut regmirror_mirror_builder,
    username: *const c_char,
    password: *const c_char,
) -> regmirror_result {
    guard::guard(|| {
        let mut builder = non_null(builder, "builder")?;
        // SAFETY: forwarded from this function's contract.
        let credentials = unsafe { credentials(username, password) }?;
        // SAFETY: a live builder, used by this thread alone per the contract.
        unsafe { builder.as_mut() }.sync.source_access.credentials = Some(credentials);
        Ok(())
    })
}

/// Credentials for the destination registry.
///
/// # Safety
/// As `regmirror_mirror_builder_set_source_credentials`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn regmirror_mirror_builder_set_dest_credentials(
    builder: *mut regmirror_mirror_builder,
    username: *const c_char,
    password: *const c_char,
) -> regmirror_result {
    guard::guard(|| {
        let mut builder = non_null(builder, "builder")?;
        // SAFETY: forwarded from this function's contract.
        let credentials = unsafe { credentials(username, password) }?;
        // SAFETY: a live builder, used by this thread alone per the contract.
        unsafe { builder.as_mut() }.sync.dest_access.credentials = Some(credentials);
        Ok(())
    })
}

/// Whether to verify each side's TLS certificate (default true); false also permits plain
/// HTTP.
///
/// # Safety
/// `builder` is NULL or a live builder.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn regmirror_mirror_builder_set_tls_verify(
    builder: *mut regmirror_mirror_builder,
    source: bool,
    dest: bool,
) -> regmirror_result {
    guard::guard(|| {
        let mut builder = non_null(builder, "builder")?;
        // SAFETY: a live builder, used by this thread alone per the contract.
        let sync = &mut unsafe { builder.as_mut() }.sync;
        sync.source_access.tls_verify = source;
        sync.dest_access.tls_verify = dest;
        Ok(())
    })
}

/// The SSRF guard for the source (default off): when `enabled`, refuse loopback, private,
/// link-local, cloud-metadata and other non-public addresses for the source registry, its
/// token service and its redirects, except what `allow` names (comma-separated host names,
/// addresses or CIDR networks such as `10.0.0.0/8`; NULL or "" for none). A sync it refuses
/// fails with `Forbidden` in the report. An invalid `allow` entry, or an `allow` list with the
/// guard off, is `REGMIRROR_INVALID_CONFIG`.
///
/// # Safety
/// `builder` is NULL or a live builder; `allow` is NULL or NUL-terminated.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn regmirror_mirror_builder_set_ssrf_guard(
    builder: *mut regmirror_mirror_builder,
    enabled: bool,
    allow: *const c_char,
) -> regmirror_result {
    guard::guard(|| {
        let mut builder = non_null(builder, "builder")?;
        let allow = if allow.is_null() {
            ""
        } else {
            // SAFETY: non-NULL and NUL-terminated per the contract.
            unsafe { utf8(allow, "allow") }?
        };
        let entries: Vec<&str> = allow
            .split(',')
            .map(str::trim)
            .filter(|e| !e.is_empty())
            .collect();
        let address_guard = AddressGuard::switch(enabled, &entries)?;
        // SAFETY: a live builder, used by this thread alone per the contract.
        unsafe { builder.as_mut() }.sync.source_access.address_guard = address_guard;
        Ok(())
    })
}

/// Keep destination tags the patterns do not select (default false: prune them).
///
/// # Safety
/// `builder` is NULL or a live builder.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn regmirror_mirror_builder_set_keep_unselected(
    builder: *mut regmirror_mirror_builder,
    keep: bool,
) -> regmirror_result {
    guard::guard(|| {
        let mut builder = non_null(builder, "builder")?;
        // SAFETY: a live builder, used by this thread alone per the contract.
        unsafe { builder.as_mut() }.sync.keep_unselected = keep;
        Ok(())
    })
}

/// Fail the run when the source or destination registry lists more tags than `max_tags`
/// (default 1000000; an endless tag list stops there). 0 is `REGMIRROR_INVALID_CONFIG` at
/// `_build`.
///
/// # Safety
/// `builder` is NULL or a live builder.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn regmirror_mirror_builder_set_max_tags(
    builder: *mut regmirror_mirror_builder,
    max_tags: usize,
) -> regmirror_result {
    guard::guard(|| {
        let mut builder = non_null(builder, "builder")?;
        // SAFETY: a live builder, used by this thread alone per the contract.
        unsafe { builder.as_mut() }.sync.max_tags = max_tags;
        Ok(())
    })
}

/// Which signatures, SBOMs and attestations travel with the images (default "all"): "all",
/// "none", or comma-separated artifact types such as
/// "application/vnd.dev.cosign.simplesigning.v1+json". Anything else is
/// `REGMIRROR_INVALID_CONFIG`.
///
/// # Safety
/// `builder` is NULL or a live builder; `referrers` is NULL or NUL-terminated.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn regmirror_mirror_builder_set_referrers(
    builder: *mut regmirror_mirror_builder,
    referrers: *const c_char,
) -> regmirror_result {
    guard::guard(|| {
        let mut builder = non_null(builder, "builder")?;
        // SAFETY: forwarded from this function's contract.
        let referrers = unsafe { utf8(referrers, "referrers") }?.parse()?;
        // SAFETY: a live builder, used by this thread alone per the contract.
        unsafe { builder.as_mut() }.sync.referrers = referrers;
        Ok(())
    })
}

/// Check the settings and build the mirror. The builder is consumed whatever the result
/// (do not free it afterwards). On success `*out` receives a mirror to release with
/// `regmirror_mirror_free`; an invalid pattern is `REGMIRROR_INVALID_PATTERN`, an invalid
/// setting `REGMIRROR_INVALID_CONFIG`.
///
/// # Safety
/// `builder` is NULL or a live builder; `out` is NULL or valid for a write.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn regmirror_mirror_builder_build(
    builder: *mut regmirror_mirror_builder,
    out: *mut *mut regmirror_mirror,
) -> regmirror_result {
    guard::guard(|| {
        let builder = non_null(builder, "builder")?;
        // SAFETY: made by Box::into_raw in regmirror_mirror_builder_new; consumed here, once.
        let builder = unsafe { Box::from_raw(builder.as_ptr()) };
        let out = non_null(out, "out")?;
        builder.sync.config()?;
        let mirror = Box::new(regmirror_mirror { sync: builder.sync });
        // SAFETY: non-NULL and valid for a write per the contract.
        unsafe { out.write(Box::into_raw(mirror)) };
        Ok(())
    })
}

/// Release a builder that was not built. `NULL` does nothing.
///
/// # Safety
/// `builder` is NULL or a live builder not passed to `_build`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn regmirror_mirror_builder_free(builder: *mut regmirror_mirror_builder) {
    if builder.is_null() {
        return;
    }
    guard::guard(|| {
        // SAFETY: made by Box::into_raw in regmirror_mirror_builder_new, freed once.
        drop(unsafe { Box::from_raw(builder) });
        Ok(())
    });
}

/// Run one sync, blocking the calling thread until it ends. `*out` receives the report as a
/// JSON object (`outcome`: `"success"`, `"failed"` or `"cancelled"`; `tags_synced`,
/// `tags_current`, `tags_failed`, `tags_deleted`, `error` (null unless the run failed or was
/// cancelled), `note` (a remark on a success, e.g. no tags matched), byte and blob counts,
/// `referrers_copied`), to
/// release with `regmirror_string_free`. A failed tag is in the report with `REGMIRROR_OK`; an
/// error code means the run could not start.
///
/// # Safety
/// `mirror` is NULL or a live mirror; `out` is NULL or valid for a write.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn regmirror_mirror_sync(
    mirror: *const regmirror_mirror,
    out: *mut *mut c_char,
) -> regmirror_result {
    guard::guard(|| {
        let mirror = non_null(mirror.cast_mut(), "mirror")?;
        let out = non_null(out, "out")?;
        // SAFETY: a live mirror, only read.
        let sync = &unsafe { mirror.as_ref() }.sync;
        let report = runtime()?.block_on(sync.run(SyncOptions::default()))?;
        let json = serde_json::to_string(&report)
            .map_err(|e| Failure::internal(format!("serializing the report: {e}")))?;
        let json = to_owned_c(json)?;
        // SAFETY: non-NULL and valid for a write per the contract.
        unsafe { out.write(json) };
        Ok(())
    })
}

/// Release a mirror. `NULL` does nothing.
///
/// # Safety
/// `mirror` is NULL or a mirror from `regmirror_mirror_builder_build` not freed yet, and no
/// sync on it is running.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn regmirror_mirror_free(mirror: *mut regmirror_mirror) {
    if mirror.is_null() {
        return;
    }
    guard::guard(|| {
        // SAFETY: made by Box::into_raw in regmirror_mirror_builder_build, freed once.
        drop(unsafe { Box::from_raw(mirror) });
        Ok(())
    });
}

/// # Safety
/// The strings are NULL or NUL-terminated.
unsafe fn credentials(
    username: *const c_char,
    password: *const c_char,
) -> Result<Credentials, Failure> {
    // SAFETY: forwarded from the caller's contract.
    let (username, password) =
        unsafe { (utf8(username, "username")?, utf8(password, "password")?) };
    Ok(Credentials::new(username, password))
}

/// The runtime syncs run on, started by the first sync; the calling thread blocks on it.
fn runtime() -> Result<&'static tokio::runtime::Runtime, Failure> {
    static RUNTIME: OnceLock<std::io::Result<tokio::runtime::Runtime>> = OnceLock::new();
    RUNTIME
        .get_or_init(|| {
            tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .thread_name("regmirror")
                .build()
        })
        .as_ref()
        .map_err(|e| Failure::internal(format!("starting regmirror's runtime: {e}")))
}
