//! `regmirror_mirror`: one mirror from a source to a destination, synced on demand without a
//! state store ([`engine::oneshot::OneShotSync`]). Configured through a builder
//! (`regmirror_mirror_builder`), which `_build` consumes; the built mirror is immutable and may
//! be synced from several threads.

use std::ffi::{c_char, c_void};
use std::path::PathBuf;
use std::ptr;
use std::time::Duration;

use engine::oneshot::{Access, Location, OneShotSync};
use engine::registry::http::AddressGuard;
use engine::{Credentials, ProxyConfig};

use crate::callback::regmirror_event_callback;
use crate::cancel::regmirror_cancel;
use crate::guard::{self, Failure, non_null, opt_utf8, utf8};
use crate::result_code::regmirror_result;
use crate::run;
use crate::strings::json;

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

/// Copy only these platforms of multi-arch images: comma-separated architectures such as
/// "amd64,arm64" (NULL or "" copies all, the default). An unknown one is
/// `REGMIRROR_INVALID_CONFIG` at `_build`.
///
/// # Safety
/// `builder` is NULL or a live builder; `architectures` is NULL or NUL-terminated.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn regmirror_mirror_builder_set_architectures(
    builder: *mut regmirror_mirror_builder,
    architectures: *const c_char,
) -> regmirror_result {
    // SAFETY: forwarded from this function's contract.
    unsafe {
        configure(builder, |sync| {
            let list = opt_utf8(architectures, "architectures")?.unwrap_or_default();
            sync.architectures = comma_separated(list);
            Ok(())
        })
    }
}

/// What happens to the destination when a tag fails: "failed_tags_only" (the default: failed
/// tags keep their old value, the rest of the run stands) or "all_or_nothing" (any failure
/// puts the destination back as it was). Anything else is `REGMIRROR_INVALID_CONFIG`.
///
/// # Safety
/// `builder` is NULL or a live builder; `rollback` is NULL or NUL-terminated.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn regmirror_mirror_builder_set_rollback(
    builder: *mut regmirror_mirror_builder,
    rollback: *const c_char,
) -> regmirror_result {
    // SAFETY: forwarded from this function's contract.
    unsafe {
        configure(builder, |sync| {
            sync.rollback = utf8(rollback, "rollback")?.parse()?;
            Ok(())
        })
    }
}

/// With architectures set, what to do when the destination refuses an index whose other
/// platforms are missing: "sparse" (the default: fail the tag) or "rewrite" (push an index of
/// the selected platforms). Anything else is `REGMIRROR_INVALID_CONFIG`.
///
/// # Safety
/// `builder` is NULL or a live builder; `platform_index` is NULL or NUL-terminated.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn regmirror_mirror_builder_set_platform_index(
    builder: *mut regmirror_mirror_builder,
    platform_index: *const c_char,
) -> regmirror_result {
    // SAFETY: forwarded from this function's contract.
    unsafe {
        configure(builder, |sync| {
            sync.platform_index = utf8(platform_index, "platform_index")?.parse()?;
            Ok(())
        })
    }
}

/// Blob copies and registry requests in flight at once (default 8; small reads up to 4x as
/// many per registry, up to 32, and up to 8 times that to a far one). 0 is
/// `REGMIRROR_INVALID_CONFIG` at `_build`.
///
/// # Safety
/// `builder` is NULL or a live builder.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn regmirror_mirror_builder_set_concurrency(
    builder: *mut regmirror_mirror_builder,
    concurrency: usize,
) -> regmirror_result {
    // SAFETY: forwarded from this function's contract.
    unsafe {
        configure(builder, |sync| {
            sync.concurrency = concurrency;
            Ok(())
        })
    }
}

/// Give up on a sync or preview after `timeout_ms` milliseconds (default one hour): the sync
/// then ends with outcome "failed" and a timeout error, a preview with `REGMIRROR_TIMEOUT`,
/// even against a registry that accepts connections and never answers. 0 is
/// `REGMIRROR_INVALID_CONFIG` at `_build`.
///
/// # Safety
/// `builder` is NULL or a live builder.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn regmirror_mirror_builder_set_timeout_ms(
    builder: *mut regmirror_mirror_builder,
    timeout_ms: u64,
) -> regmirror_result {
    // SAFETY: forwarded from this function's contract.
    unsafe {
        configure(builder, |sync| {
            sync.timeout = Duration::from_millis(timeout_ms);
            Ok(())
        })
    }
}

/// Trust extra CA certificates for the source: `path` is a PEM file, or a directory of `*.crt`
/// files whose `client.cert` + `client.key` (if any) is the client certificate to present, as
/// in docker's `certs.d/HOST`. May be called several times; a path that cannot be read fails
/// the sync.
///
/// # Safety
/// `builder` is NULL or a live builder; `path` is NULL or NUL-terminated.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn regmirror_mirror_builder_add_source_ca_certs(
    builder: *mut regmirror_mirror_builder,
    path: *const c_char,
) -> regmirror_result {
    // SAFETY: forwarded from this function's contract.
    unsafe { add_ca_certs(builder, path, |sync| &mut sync.source_access) }
}

/// As `regmirror_mirror_builder_add_source_ca_certs`, for the destination.
///
/// # Safety
/// As `regmirror_mirror_builder_add_source_ca_certs`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn regmirror_mirror_builder_add_dest_ca_certs(
    builder: *mut regmirror_mirror_builder,
    path: *const c_char,
) -> regmirror_result {
    // SAFETY: forwarded from this function's contract.
    unsafe { add_ca_certs(builder, path, |sync| &mut sync.dest_access) }
}

/// Where each side's credentials come from when none were set: with `source` / `dest` true,
/// the logins docker and podman store (`$REGISTRY_AUTH_FILE`,
/// `$XDG_RUNTIME_DIR/containers/auth.json`, `$DOCKER_CONFIG` or `~/.docker/config.json`,
/// credential helpers); false (the default) is anonymous.
///
/// # Safety
/// `builder` is NULL or a live builder.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn regmirror_mirror_builder_set_docker_config(
    builder: *mut regmirror_mirror_builder,
    source: bool,
    dest: bool,
) -> regmirror_result {
    // SAFETY: forwarded from this function's contract.
    unsafe {
        configure(builder, |sync| {
            sync.source_access.docker_config = source;
            sync.dest_access.docker_config = dest;
            Ok(())
        })
    }
}

/// Read stored logins for the source from this auth file (docker `config.json` / podman
/// `auth.json` format, skopeo's `--authfile`) instead of the default locations, when no
/// credentials were set. It must exist when the sync starts. NULL unsets it.
///
/// # Safety
/// `builder` is NULL or a live builder; `path` is NULL or NUL-terminated.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn regmirror_mirror_builder_set_source_auth_file(
    builder: *mut regmirror_mirror_builder,
    path: *const c_char,
) -> regmirror_result {
    // SAFETY: forwarded from this function's contract.
    unsafe { set_auth_file(builder, path, |sync| &mut sync.source_access) }
}

/// As `regmirror_mirror_builder_set_source_auth_file`, for the destination.
///
/// # Safety
/// As `regmirror_mirror_builder_set_source_auth_file`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn regmirror_mirror_builder_set_dest_auth_file(
    builder: *mut regmirror_mirror_builder,
    path: *const c_char,
) -> regmirror_result {
    // SAFETY: forwarded from this function's contract.
    unsafe { set_auth_file(builder, path, |sync| &mut sync.dest_access) }
}

/// Proxies for reaching the source registry: `http_proxy` for http:// and `https_proxy` for
/// https:// addresses (URLs, `user:password@` allowed and never shown), `no_proxy` the hosts
/// reached directly (comma-separated). All NULL (the default): the usual `*_proxy`
/// environment variables.
///
/// # Safety
/// `builder` is NULL or a live builder; the strings are NULL or NUL-terminated.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn regmirror_mirror_builder_set_source_proxy(
    builder: *mut regmirror_mirror_builder,
    http_proxy: *const c_char,
    https_proxy: *const c_char,
    no_proxy: *const c_char,
) -> regmirror_result {
    // SAFETY: forwarded from this function's contract.
    unsafe {
        set_proxy(builder, [http_proxy, https_proxy, no_proxy], |sync| {
            &mut sync.source_access
        })
    }
}

/// As `regmirror_mirror_builder_set_source_proxy`, for the destination.
///
/// # Safety
/// As `regmirror_mirror_builder_set_source_proxy`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn regmirror_mirror_builder_set_dest_proxy(
    builder: *mut regmirror_mirror_builder,
    http_proxy: *const c_char,
    https_proxy: *const c_char,
    no_proxy: *const c_char,
) -> regmirror_result {
    // SAFETY: forwarded from this function's contract.
    unsafe {
        set_proxy(builder, [http_proxy, https_proxy, no_proxy], |sync| {
            &mut sync.dest_access
        })
    }
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
/// JSON object with the field names of `regmirror sync --json` (`outcome`: `"success"`,
/// `"failed"` or `"cancelled"`; `tags_synced`, `tags_current`, `tags_deleted`, `tags_skipped`;
/// `tags_failed`, each with `tag`, `reason` and the error's `kind` (`"NotFound"`,
/// `"Unauthorized"`, ... as the result codes name them), `side`, `phase`, `host`, `detail`,
/// `message`; `error` and `failure` (the same fields, for the run: null unless it failed or was
/// cancelled), `note` (a remark on a success, e.g. no tags matched), byte and blob counts,
/// `referrers_copied`, `duration_ms`), to release with `regmirror_string_free`. A failed tag is
/// in the report with `REGMIRROR_OK`; an error code means the run could not start.
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
        // SAFETY: no cancel handle, no callback.
        let report =
            unsafe { run::with_options(ptr::null(), None, ptr::null_mut(), |o| sync.run(o)) }?;
        // SAFETY: non-NULL and valid for a write per the contract.
        unsafe { out.write(json(&report)?) };
        Ok(())
    })
}

/// As `regmirror_mirror_sync`, with a cancel handle and a progress callback (each may be
/// NULL). `regmirror_cancel_cancel(cancel)` from another thread stops the run after the work in
/// flight; the report then says `"outcome":"cancelled"`. `progress` receives the run's progress
/// events as JSON objects whose `type` is `"planned"` (`selected`, `to_copy`), `"tag_started"`
/// (`tag`), `"tag_finished"` (`tag`, `status`: `"synced"`/`"current"`/`"failed"`/`"skipped"`,
/// `digest`, `error`), `"blob_bytes"` (`digest`, `done`, `total`; at most five a second, and
/// each blob's last) or `"blob_finished"` (`digest`, `transfer`: `"copied"`/`"mounted"`/
/// `"present"`), with `userdata`. The callback runs on a regmirror thread; a slow one misses events rather than
/// slowing the sync, and none is made after this function returns.
///
/// # Safety
/// `mirror` is NULL or a live mirror; `cancel` is NULL or a live handle; `out` is NULL or
/// valid for a write; `progress`, if not NULL, may be called with `userdata` from another
/// thread until this function returns.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn regmirror_mirror_sync_with(
    mirror: *const regmirror_mirror,
    cancel: *const regmirror_cancel,
    progress: regmirror_event_callback,
    userdata: *mut c_void,
    out: *mut *mut c_char,
) -> regmirror_result {
    guard::guard(|| {
        let mirror = non_null(mirror.cast_mut(), "mirror")?;
        let out = non_null(out, "out")?;
        // SAFETY: a live mirror, only read.
        let sync = &unsafe { mirror.as_ref() }.sync;
        // SAFETY: forwarded from this function's contract.
        let report = unsafe { run::with_options(cancel, progress, userdata, |o| sync.run(o)) }?;
        // SAFETY: non-NULL and valid for a write per the contract.
        unsafe { out.write(json(&report)?) };
        Ok(())
    })
}

/// What a sync would do now, changing nothing (a dry run): `*out` receives a JSON object with
/// `mirror_id`, `source`, `tags` (each `tag`, `action`: `"copy"`, `"current"`, `"skip"` or
/// `"fail"`, the source `digest`, `bytes` it needs moved, `reason` it fails or is skipped),
/// `tags_to_delete`, `blobs_to_copy`,
/// `bytes_to_copy` and `note`, to release with `regmirror_string_free`. Unlike a sync, a
/// registry that cannot be reached is an error code (`REGMIRROR_NETWORK`, `REGMIRROR_TIMEOUT`
/// at the timeout, `REGMIRROR_CANCELLED` when `cancel`, which may be NULL, is triggered).
///
/// # Safety
/// `mirror` is NULL or a live mirror; `cancel` is NULL or a live handle; `out` is NULL or
/// valid for a write.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn regmirror_mirror_preview(
    mirror: *const regmirror_mirror,
    cancel: *const regmirror_cancel,
    out: *mut *mut c_char,
) -> regmirror_result {
    guard::guard(|| {
        let mirror = non_null(mirror.cast_mut(), "mirror")?;
        let out = non_null(out, "out")?;
        // SAFETY: a live mirror, only read.
        let sync = &unsafe { mirror.as_ref() }.sync;
        // SAFETY: forwarded from this function's contract; no callback.
        let preview =
            unsafe { run::with_options(cancel, None, ptr::null_mut(), |o| sync.preview(o)) }?;
        // SAFETY: non-NULL and valid for a write per the contract.
        unsafe { out.write(json(&preview)?) };
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

/// Apply `set` to a live builder's settings.
///
/// # Safety
/// `builder` is NULL or a live builder, used by this thread alone.
unsafe fn configure(
    builder: *mut regmirror_mirror_builder,
    set: impl FnOnce(&mut OneShotSync) -> Result<(), Failure>,
) -> regmirror_result {
    guard::guard(|| {
        let mut builder = non_null(builder, "builder")?;
        // SAFETY: a live builder, used by this thread alone per the contract.
        set(&mut unsafe { builder.as_mut() }.sync)
    })
}

/// # Safety
/// As [`configure`]; `path` is NULL or NUL-terminated.
unsafe fn add_ca_certs(
    builder: *mut regmirror_mirror_builder,
    path: *const c_char,
    side: fn(&mut OneShotSync) -> &mut Access,
) -> regmirror_result {
    // SAFETY: forwarded from this function's contract.
    unsafe {
        configure(builder, |sync| {
            let path = utf8(path, "path")?;
            side(sync).ca_certs.push(PathBuf::from(path));
            Ok(())
        })
    }
}

/// # Safety
/// As [`configure`]; `path` is NULL or NUL-terminated.
unsafe fn set_auth_file(
    builder: *mut regmirror_mirror_builder,
    path: *const c_char,
    side: fn(&mut OneShotSync) -> &mut Access,
) -> regmirror_result {
    // SAFETY: forwarded from this function's contract.
    unsafe {
        configure(builder, |sync| {
            side(sync).auth_file = opt_utf8(path, "path")?.map(PathBuf::from);
            Ok(())
        })
    }
}

/// # Safety
/// As [`configure`]; the strings are NULL or NUL-terminated.
unsafe fn set_proxy(
    builder: *mut regmirror_mirror_builder,
    [http, https, no]: [*const c_char; 3],
    side: fn(&mut OneShotSync) -> &mut Access,
) -> regmirror_result {
    // SAFETY: forwarded from this function's contract.
    unsafe {
        configure(builder, |sync| {
            let owned = |s: Option<&str>| s.map(str::to_owned);
            side(sync).proxy = ProxyConfig {
                http_proxy: owned(opt_utf8(http, "http_proxy")?),
                https_proxy: owned(opt_utf8(https, "https_proxy")?),
                no_proxy: owned(opt_utf8(no, "no_proxy")?),
            };
            Ok(())
        })
    }
}

/// `"a, b,,c"` as `["a", "b", "c"]`.
fn comma_separated(list: &str) -> Vec<String> {
    list.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}
