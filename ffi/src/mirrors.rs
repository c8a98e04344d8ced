//! `regmirror_mirrors`: the mirrors kept in a state store (the store `regmirror worker` and
//! `regmirror mirror ...` use), managed, synced and previewed through the core's front door
//! ([`engine::Mirror`]). Opened through a builder (`regmirror_mirrors_builder`) naming the store
//! and the destination; mirrors' settings and everything returned are JSON.

use std::ffi::{c_char, c_void};
use std::path::PathBuf;
use std::ptr::{self, NonNull};
use std::sync::Arc;

use engine::config::MirrorSettings;
use engine::handoff::CallbackNotifier;
use engine::state::StoreTimeouts;
use engine::{Credentials, Destination, Mirror, Notifier, StoreUrl};

use crate::callback::{Gate, regmirror_event_callback};
use crate::cancel::regmirror_cancel;
use crate::guard::{self, Failure, non_null, opt_utf8, utf8};
use crate::result_code::regmirror_result;
use crate::run::{self, runtime};
use crate::strings::json;

/// Where a `regmirror_mirrors` keeps its mirrors and writes them, before it is opened.
#[derive(Debug)]
pub struct regmirror_mirrors_builder {
    store: StoreUrl,
    destination: Option<Destination>,
    notifier: Option<Gate>,
}

/// Mirrors in a state store. Thread-safe: its functions may be called from several threads at
/// once.
#[derive(Debug)]
pub struct regmirror_mirrors {
    pub(crate) parts: Parts,
    mirror: Mirror,
}

/// What a [`Mirror`] on this store is built from (a worker builds its own, with its lease).
#[derive(Debug, Clone)]
pub(crate) struct Parts {
    store: Arc<dyn engine::StateStore>,
    destination: Option<Destination>,
    notifier: Option<Arc<dyn Notifier>>,
    /// Closed when the handle is freed: no event reaches C after that.
    gate: Option<Gate>,
}

impl Parts {
    /// The front door to this store, with `lease` for the runs it claims and `concurrency`
    /// per run (defaults if `None`).
    pub(crate) fn mirror(
        &self,
        lease: Option<std::time::Duration>,
        concurrency: Option<usize>,
    ) -> Result<Mirror, Failure> {
        let mut builder = Mirror::builder().state(Arc::clone(&self.store));
        if let Some(destination) = &self.destination {
            builder = builder.destination_spec(destination.clone());
        }
        if let Some(notifier) = &self.notifier {
            builder = builder.notifier(Arc::clone(notifier));
        }
        if let Some(lease) = lease {
            builder = builder.lease(lease);
        }
        if let Some(concurrency) = concurrency {
            builder = builder.concurrency(concurrency);
        }
        Ok(builder.build()?)
    }
}

/// Start opening mirrors kept in the state store `state` — `sqlite:PATH` (created if
/// missing), `postgres://USER:PASSWORD@HOST/DB` (also `postgresql://`), or `memory:` (this
/// handle alone) — written to `destination`: a registry `HOST[:PORT]` (each mirror's id is its
/// repository there) or `oci:DIR` (a layout per mirror under DIR); NULL manages mirrors only
/// (sync, preview and workers then fail with `REGMIRROR_INVALID_CONFIG`). `*out` receives a
/// builder for `regmirror_mirrors_builder_open` (or `_free`). Nothing is connected yet.
///
/// # Safety
/// `state` and `destination` are NULL or NUL-terminated; `out` is NULL or valid for a write.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn regmirror_mirrors_builder_new(
    state: *const c_char,
    destination: *const c_char,
    out: *mut *mut regmirror_mirrors_builder,
) -> regmirror_result {
    guard::guard(|| {
        // SAFETY: forwarded from this function's contract.
        let (state, destination) =
            unsafe { (utf8(state, "state")?, opt_utf8(destination, "destination")?) };
        let out = non_null(out, "out")?;
        let builder = Box::new(regmirror_mirrors_builder {
            store: state.parse()?,
            destination: destination.map(Destination::parse).transpose()?,
            notifier: None,
        });
        // SAFETY: non-NULL and valid for a write per the contract.
        unsafe { out.write(Box::into_raw(builder)) };
        Ok(())
    })
}

/// The destination registry's robot: the credentials mirrors write with, and the one identity
/// allowed to push to a mirrored repository. Never shown in messages, views or events.
///
/// # Safety
/// `builder` is NULL or a live builder; the strings are NULL or NUL-terminated.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn regmirror_mirrors_builder_set_dest_credentials(
    builder: *mut regmirror_mirrors_builder,
    username: *const c_char,
    password: *const c_char,
) -> regmirror_result {
    // SAFETY: forwarded from this function's contract.
    unsafe {
        with_destination(builder, |dest| {
            let (username, password) = (utf8(username, "username")?, utf8(password, "password")?);
            dest.credentials = Some(Credentials::new(username, password));
            Ok(())
        })
    }
}

/// Whether to verify the destination registry's TLS certificate (default true); false also
/// permits plain HTTP.
///
/// # Safety
/// `builder` is NULL or a live builder.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn regmirror_mirrors_builder_set_dest_tls_verify(
    builder: *mut regmirror_mirrors_builder,
    verify: bool,
) -> regmirror_result {
    // SAFETY: forwarded from this function's contract.
    unsafe {
        with_destination(builder, |dest| {
            dest.tls_verify = verify;
            Ok(())
        })
    }
}

/// Trust extra CA certificates for the destination registry: a PEM file, or a directory of
/// `*.crt` files (docker's `certs.d/HOST`). May be called several times.
///
/// # Safety
/// `builder` is NULL or a live builder; `path` is NULL or NUL-terminated.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn regmirror_mirrors_builder_add_dest_ca_certs(
    builder: *mut regmirror_mirrors_builder,
    path: *const c_char,
) -> regmirror_result {
    // SAFETY: forwarded from this function's contract.
    unsafe {
        with_destination(builder, |dest| {
            dest.ca_certs.push(PathBuf::from(utf8(path, "path")?));
            Ok(())
        })
    }
}

/// Receive every run's events (of syncs through this handle and of its workers): `callback`
/// is called with `userdata` and a JSON object holding the webhook payload's fields —
/// `event` (`"sync_started"`, `"sync_succeeded"`, `"sync_failed"` or `"sync_cancelled"`),
/// `mirror_id`, `source`, `patterns`, `tags_synced`, `tags_failed`, `tags_deleted`,
/// `bytes_copied`, `referrers_copied`, `duration_ms`, `error` (null unless failed or
/// cancelled) and `note`. Calls come one at a time from a regmirror thread; a callback that is
/// slow or blocks delays no sync (events wait in a queue of 1024, then are dropped). None is
/// made after `regmirror_mirrors_free` returns. NULL `callback` removes it.
///
/// # Safety
/// `builder` is NULL or a live builder; `callback`, if not NULL, may be called with `userdata`
/// from another thread until `regmirror_mirrors_free`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn regmirror_mirrors_builder_set_notifier(
    builder: *mut regmirror_mirrors_builder,
    callback: regmirror_event_callback,
    userdata: *mut c_void,
) -> regmirror_result {
    guard::guard(|| {
        let mut builder = non_null(builder, "builder")?;
        // SAFETY: a live builder, used by this thread alone per the contract.
        unsafe { builder.as_mut() }.notifier = Gate::new(callback, userdata);
        Ok(())
    })
}

/// Connect to the state store (creating its tables if needed) and open the destination. The
/// builder is consumed whatever the result. On success `*out` receives the handle, released
/// with `regmirror_mirrors_free`; an unreachable store is `REGMIRROR_STATE`, an invalid
/// setting `REGMIRROR_INVALID_CONFIG`.
///
/// # Safety
/// `builder` is NULL or a live builder; `out` is NULL or valid for a write.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn regmirror_mirrors_builder_open(
    builder: *mut regmirror_mirrors_builder,
    out: *mut *mut regmirror_mirrors,
) -> regmirror_result {
    guard::guard(|| {
        let builder = non_null(builder, "builder")?;
        // SAFETY: made by Box::into_raw in regmirror_mirrors_builder_new; consumed here, once.
        let builder = unsafe { Box::from_raw(builder.as_ptr()) };
        let out = non_null(out, "out")?;
        let store = runtime()?.block_on(builder.store.open(StoreTimeouts::default()))?;
        let notifier = match &builder.notifier {
            Some(gate) => {
                let gate = gate.clone();
                let notifier =
                    CallbackNotifier::new("regmirror-notifier", move |e| gate.deliver(&e))?;
                Some(Arc::new(notifier) as Arc<dyn Notifier>)
            }
            None => None,
        };
        let parts = Parts {
            store,
            destination: builder.destination,
            notifier,
            gate: builder.notifier,
        };
        let mirror = parts.mirror(None, None)?;
        let mirrors = Box::new(regmirror_mirrors { parts, mirror });
        // SAFETY: non-NULL and valid for a write per the contract.
        unsafe { out.write(Box::into_raw(mirrors)) };
        Ok(())
    })
}

/// Release a builder that was not opened. `NULL` does nothing.
///
/// # Safety
/// `builder` is NULL or a live builder not passed to `_open`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn regmirror_mirrors_builder_free(builder: *mut regmirror_mirrors_builder) {
    if builder.is_null() {
        return;
    }
    guard::guard(|| {
        // SAFETY: made by Box::into_raw in regmirror_mirrors_builder_new, freed once.
        drop(unsafe { Box::from_raw(builder) });
        Ok(())
    });
}

/// Add a mirror. `settings` is a JSON object with the names of a `[[mirror]]` table of the
/// worker's regmirror.toml: `id` (the destination repository), `source`
/// (`host[:port]/path`), `tags` (a list or one comma-separated string of patterns), and
/// optionally `interval` (`"6h"` or seconds; default 24h), `start` (RFC 3339), `enabled`,
/// `architectures`, `rollback`, `platform_index`, `referrers`, `tls_verify`, `cert_dir` or
/// `ca_file`, `username` / `password`, `http_proxy` / `https_proxy` / `no_proxy`, `timeout`,
/// `retry_backoff`, `robot`. An unknown name or invalid value is `REGMIRROR_INVALID_CONFIG`
/// naming it; an existing id `REGMIRROR_CONFLICT`. When `out` is not NULL it receives the
/// mirror as `regmirror_mirrors_get` returns it.
///
/// # Safety
/// `mirrors` is NULL or a live handle; `settings` is NULL or NUL-terminated; `out` is NULL or
/// valid for a write.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn regmirror_mirrors_add(
    mirrors: *const regmirror_mirrors,
    settings: *const c_char,
    out: *mut *mut c_char,
) -> regmirror_result {
    guard::guard(|| {
        let mirror = live(mirrors)?;
        // SAFETY: forwarded from this function's contract.
        let settings = MirrorSettings::from_json(unsafe { utf8(settings, "settings") }?)?;
        let view = runtime()?.block_on(async {
            let record = mirror.add(settings).await?;
            mirror.view(&record.config.id).await
        })?;
        // SAFETY: forwarded from this function's contract.
        unsafe { write_optional(out, &view) }
    })
}

/// Change mirror `id`: `changes` is a JSON object of settings (the names of
/// `regmirror_mirrors_add`) that replace the stored ones; the rest stay, and a `null` puts one
/// back to its default. `id` cannot change. Its status and schedule stay; a run in progress
/// finishes with the old settings. `REGMIRROR_NOT_FOUND` if there is no such mirror. `out` as
/// for `_add`.
///
/// # Safety
/// `mirrors` is NULL or a live handle; `id` and `changes` are NULL or NUL-terminated; `out`
/// is NULL or valid for a write.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn regmirror_mirrors_update(
    mirrors: *const regmirror_mirrors,
    id: *const c_char,
    changes: *const c_char,
    out: *mut *mut c_char,
) -> regmirror_result {
    guard::guard(|| {
        let mirror = live(mirrors)?;
        // SAFETY: forwarded from this function's contract.
        let (id, changes) = unsafe { (utf8(id, "id")?, utf8(changes, "changes")?) };
        let changes = serde_json::from_str(changes).map_err(|e| {
            let why = format!("changes: not a JSON object of settings: {e}");
            engine::Error::new(engine::ErrorKind::InvalidConfig, why)
        })?;
        let view = runtime()?.block_on(async {
            mirror.update(id, changes).await?;
            mirror.view(id).await
        })?;
        // SAFETY: forwarded from this function's contract.
        unsafe { write_optional(out, &view) }
    })
}

/// One mirror: `*out` receives a JSON object with its settings (no password: `source_username`
/// only), `status` (Quay's names: `"NEVER_RUN"`, `"SYNC_NOW"`, `"SYNCING"`, `"SUCCESS"`,
/// `"FAIL"`, `"CANCEL"`), `retries_remaining`, `last_sync`, `next_run`, `last_report` and the
/// rest of what `regmirror mirror show --json` prints, under the same names.
/// `REGMIRROR_NOT_FOUND` if there is no such mirror. Free it with `regmirror_string_free`.
///
/// # Safety
/// `mirrors` is NULL or a live handle; `id` is NULL or NUL-terminated; `out` is NULL or valid
/// for a write.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn regmirror_mirrors_get(
    mirrors: *const regmirror_mirrors,
    id: *const c_char,
    out: *mut *mut c_char,
) -> regmirror_result {
    // SAFETY: forwarded from this function's contract.
    unsafe { returning(mirrors, id, out, |m, id| async move { m.view(&id).await }) }
}

/// Every mirror, as a JSON array of what `regmirror_mirrors_get` returns (sorted by id; what
/// `regmirror mirror list --json` prints). Free it with `regmirror_string_free`.
///
/// # Safety
/// `mirrors` is NULL or a live handle; `out` is NULL or valid for a write.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn regmirror_mirrors_list(
    mirrors: *const regmirror_mirrors,
    out: *mut *mut c_char,
) -> regmirror_result {
    guard::guard(|| {
        let mirror = live(mirrors)?;
        let out = non_null(out, "out")?;
        let views = runtime()?.block_on(mirror.views())?;
        // SAFETY: non-NULL and valid for a write per the contract.
        unsafe { out.write(json(&views)?) };
        Ok(())
    })
}

/// Delete a mirror and its usage log (the destination repository is left as it is).
///
/// # Safety
/// `mirrors` is NULL or a live handle; `id` is NULL or NUL-terminated.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn regmirror_mirrors_delete(
    mirrors: *const regmirror_mirrors,
    id: *const c_char,
) -> regmirror_result {
    // SAFETY: forwarded from this function's contract.
    unsafe { acting(mirrors, id, |m, id| async move { m.delete(&id).await }) }
}

/// Let workers run the mirror on its schedule again.
///
/// # Safety
/// As `regmirror_mirrors_delete`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn regmirror_mirrors_enable(
    mirrors: *const regmirror_mirrors,
    id: *const c_char,
) -> regmirror_result {
    // SAFETY: forwarded from this function's contract.
    unsafe {
        acting(mirrors, id, |m, id| async move {
            m.set_enabled(&id, true).await.map(drop)
        })
    }
}

/// Keep workers from running the mirror on its schedule ("sync now" still runs it).
///
/// # Safety
/// As `regmirror_mirrors_delete`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn regmirror_mirrors_disable(
    mirrors: *const regmirror_mirrors,
    id: *const c_char,
) -> regmirror_result {
    // SAFETY: forwarded from this function's contract.
    unsafe {
        acting(mirrors, id, |m, id| async move {
            m.set_enabled(&id, false).await.map(drop)
        })
    }
}

/// Quay's "sync now": the mirror's status becomes `SYNC_NOW` and the next poll of a worker
/// runs it. `REGMIRROR_CONFLICT` while it is syncing.
///
/// # Safety
/// As `regmirror_mirrors_delete`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn regmirror_mirrors_sync_now(
    mirrors: *const regmirror_mirrors,
    id: *const c_char,
) -> regmirror_result {
    // SAFETY: forwarded from this function's contract.
    unsafe {
        acting(mirrors, id, |m, id| async move {
            m.sync_now(&id).await.map(drop)
        })
    }
}

/// Cancel a mirror that is syncing or waiting to (`SYNCING` or `SYNC_NOW`): its status becomes
/// `CANCEL`, a run in progress (in any worker) stops after its work in flight, and it is not
/// scheduled again until "sync now". `REGMIRROR_CONFLICT` in any other status.
///
/// # Safety
/// As `regmirror_mirrors_delete`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn regmirror_mirrors_cancel(
    mirrors: *const regmirror_mirrors,
    id: *const c_char,
) -> regmirror_result {
    // SAFETY: forwarded from this function's contract.
    unsafe {
        acting(
            mirrors,
            id,
            |m, id| async move { m.cancel(&id).await.map(drop) },
        )
    }
}

/// A mirror's usage log, newest first: at most `limit` entries with a `seq` below `before`
/// (0 for the newest), as a JSON array of objects with `seq`, `mirror_id`, `time` (RFC 3339),
/// `kind`, `tag`, `digest` and `message`. Free it with `regmirror_string_free`.
///
/// # Safety
/// `mirrors` is NULL or a live handle; `id` is NULL or NUL-terminated; `out` is NULL or valid
/// for a write.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn regmirror_mirrors_logs(
    mirrors: *const regmirror_mirrors,
    id: *const c_char,
    limit: usize,
    before: u64,
    out: *mut *mut c_char,
) -> regmirror_result {
    let before = (before != 0).then_some(before);
    // SAFETY: forwarded from this function's contract.
    unsafe {
        returning(mirrors, id, out, move |m, id| async move {
            m.logs(&id, limit, before).await
        })
    }
}

/// Sync a stored mirror now in this thread, whatever its schedule, and return its report as
/// `regmirror_mirror_sync_with` does (the same JSON; the run is recorded in the store, its log
/// and its events as a worker's run is). `cancel` and `progress` may be NULL; either the
/// cancel handle or `regmirror_mirrors_cancel` from anywhere stops it. A failed run is
/// `REGMIRROR_OK` with its report; `REGMIRROR_CONFLICT` if a worker is running it.
///
/// # Safety
/// `mirrors` is NULL or a live handle; `id` is NULL or NUL-terminated; `cancel` is NULL or a
/// live handle; `out` is NULL or valid for a write; `progress` as for
/// `regmirror_mirror_sync_with`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn regmirror_mirrors_sync(
    mirrors: *const regmirror_mirrors,
    id: *const c_char,
    cancel: *const regmirror_cancel,
    progress: regmirror_event_callback,
    userdata: *mut c_void,
    out: *mut *mut c_char,
) -> regmirror_result {
    guard::guard(|| {
        let mirror = live(mirrors)?;
        // SAFETY: forwarded from this function's contract.
        let id = unsafe { utf8(id, "id") }?;
        let out = non_null(out, "out")?;
        // SAFETY: forwarded from this function's contract.
        let report =
            unsafe { run::with_options(cancel, progress, userdata, |o| mirror.sync_with(id, o)) }?;
        // SAFETY: non-NULL and valid for a write per the contract.
        unsafe { out.write(json(&report)?) };
        Ok(())
    })
}

/// What syncing a stored mirror now would do, changing nothing: the JSON of
/// `regmirror_mirror_preview`. `cancel` may be NULL.
///
/// # Safety
/// `mirrors` is NULL or a live handle; `id` is NULL or NUL-terminated; `cancel` is NULL or a
/// live handle; `out` is NULL or valid for a write.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn regmirror_mirrors_preview(
    mirrors: *const regmirror_mirrors,
    id: *const c_char,
    cancel: *const regmirror_cancel,
    out: *mut *mut c_char,
) -> regmirror_result {
    guard::guard(|| {
        let mirror = live(mirrors)?;
        // SAFETY: forwarded from this function's contract.
        let id = unsafe { utf8(id, "id") }?;
        let out = non_null(out, "out")?;
        // SAFETY: forwarded from this function's contract; no callback.
        let preview = unsafe {
            run::with_options(cancel, None, ptr::null_mut(), |o| {
                mirror.preview_with(id, o)
            })
        }?;
        // SAFETY: non-NULL and valid for a write per the contract.
        unsafe { out.write(json(&preview)?) };
        Ok(())
    })
}

/// Release the handle; its notifier callback is not called after this returns (a call in
/// progress is waited for). Stop its workers first (`regmirror_worker_stop`): they keep running
/// without it, but their events no longer reach the callback. `NULL` does nothing.
///
/// # Safety
/// `mirrors` is NULL or a handle not freed yet that no other thread is using; not called from
/// its own notifier callback.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn regmirror_mirrors_free(mirrors: *mut regmirror_mirrors) {
    if mirrors.is_null() {
        return;
    }
    guard::guard(|| {
        // SAFETY: made by Box::into_raw in regmirror_mirrors_builder_open, freed once.
        let mirrors = unsafe { Box::from_raw(mirrors) };
        if let Some(gate) = &mirrors.parts.gate {
            gate.close();
        }
        Ok(())
    });
}

/// The front door of a live handle.
fn live<'a>(mirrors: *const regmirror_mirrors) -> Result<&'a Mirror, Failure> {
    let mirrors: NonNull<regmirror_mirrors> = non_null(mirrors.cast_mut(), "mirrors")?;
    // SAFETY: the callers' contracts: NULL (refused above) or a live handle, only read.
    Ok(&unsafe { mirrors.as_ref() }.mirror)
}

/// Apply `set` to a builder's destination (`REGMIRROR_INVALID_CONFIG` if it has none).
///
/// # Safety
/// `builder` is NULL or a live builder, used by this thread alone.
unsafe fn with_destination(
    builder: *mut regmirror_mirrors_builder,
    set: impl FnOnce(&mut Destination) -> Result<(), Failure>,
) -> regmirror_result {
    guard::guard(|| {
        let mut builder = non_null(builder, "builder")?;
        // SAFETY: a live builder, used by this thread alone per the contract.
        let destination = unsafe { builder.as_mut() }.destination.as_mut();
        let destination = destination.ok_or_else(|| {
            Failure::from(engine::Error::new(
                engine::ErrorKind::InvalidConfig,
                "this regmirror_mirrors_builder has no destination (it was given NULL)",
            ))
        })?;
        set(destination)
    })
}

/// Write `value` as JSON to `out`, unless `out` is NULL (the caller does not want it).
///
/// # Safety
/// `out` is NULL or valid for a write.
unsafe fn write_optional(
    out: *mut *mut c_char,
    value: &impl serde::Serialize,
) -> Result<(), Failure> {
    if !out.is_null() {
        // SAFETY: non-NULL and valid for a write per the contract.
        unsafe { out.write(json(value)?) };
    }
    Ok(())
}

/// Run `body` on the mirror `id` and write its JSON result to `out`.
///
/// # Safety
/// `mirrors` is NULL or a live handle; `id` is NULL or NUL-terminated; `out` is NULL or valid
/// for a write.
unsafe fn returning<T: serde::Serialize, F>(
    mirrors: *const regmirror_mirrors,
    id: *const c_char,
    out: *mut *mut c_char,
    body: impl FnOnce(Mirror, String) -> F,
) -> regmirror_result
where
    F: Future<Output = engine::Result<T>>,
{
    guard::guard(|| {
        let mirror = live(mirrors)?;
        // SAFETY: forwarded from this function's contract.
        let id = unsafe { utf8(id, "id") }?.to_owned();
        let out = non_null(out, "out")?;
        let value = runtime()?.block_on(body(mirror.clone(), id))?;
        // SAFETY: non-NULL and valid for a write per the contract.
        unsafe { out.write(json(&value)?) };
        Ok(())
    })
}

/// Run `body` on the mirror `id`.
///
/// # Safety
/// `mirrors` is NULL or a live handle; `id` is NULL or NUL-terminated.
unsafe fn acting<F>(
    mirrors: *const regmirror_mirrors,
    id: *const c_char,
    body: impl FnOnce(Mirror, String) -> F,
) -> regmirror_result
where
    F: Future<Output = engine::Result<()>>,
{
    guard::guard(|| {
        let mirror = live(mirrors)?;
        // SAFETY: forwarded from this function's contract.
        let id = unsafe { utf8(id, "id") }?.to_owned();
        runtime()?.block_on(body(mirror.clone(), id))?;
        Ok(())
    })
}
