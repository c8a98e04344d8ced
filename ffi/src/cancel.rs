//! `regmirror_cancel`: a handle that stops a running sync or preview from another thread.

use engine::CancellationToken;

use crate::guard::{self, non_null};
use crate::result_code::regmirror_result;

/// Stops the syncs and previews it was passed to. Thread-safe: pass it to a sync on one
/// thread and call `regmirror_cancel_cancel` on another.
#[derive(Debug, Default)]
pub struct regmirror_cancel {
    pub(crate) token: CancellationToken,
}

/// A new, untriggered cancel handle in `*out`, released with `regmirror_cancel_free`.
///
/// # Safety
/// `out` is NULL or valid for a write.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn regmirror_cancel_new(out: *mut *mut regmirror_cancel) -> regmirror_result {
    guard::guard(|| {
        let out = non_null(out, "out")?;
        let cancel = Box::new(regmirror_cancel::default());
        // SAFETY: non-NULL and valid for a write per the contract.
        unsafe { out.write(Box::into_raw(cancel)) };
        Ok(())
    })
}

/// Stop every sync and preview given this handle, now and later: each ends after the unit of
/// work in flight (nothing half-published, no rollback) with outcome `"cancelled"` (a preview
/// with `REGMIRROR_CANCELLED`). Callable from any thread, any number of times.
///
/// # Safety
/// `cancel` is NULL or a live handle.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn regmirror_cancel_cancel(
    cancel: *const regmirror_cancel,
) -> regmirror_result {
    guard::guard(|| {
        let cancel = non_null(cancel.cast_mut(), "cancel")?;
        // SAFETY: a live handle; CancellationToken is thread-safe.
        unsafe { cancel.as_ref() }.token.cancel();
        Ok(())
    })
}

/// Whether `regmirror_cancel_cancel` was called on this handle (false for NULL).
///
/// # Safety
/// `cancel` is NULL or a live handle.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn regmirror_cancel_is_cancelled(cancel: *const regmirror_cancel) -> bool {
    // SAFETY: NULL or a live handle per the contract.
    unsafe { cancel.as_ref() }.is_some_and(|c| c.token.is_cancelled())
}

/// Release a cancel handle. `NULL` does nothing. A sync or preview given it keeps working (and
/// can no longer be cancelled through it).
///
/// # Safety
/// `cancel` is NULL or a handle not freed yet, which no other thread still uses.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn regmirror_cancel_free(cancel: *mut regmirror_cancel) {
    if cancel.is_null() {
        return;
    }
    guard::guard(|| {
        // SAFETY: made by Box::into_raw in regmirror_cancel_new, freed once.
        drop(unsafe { Box::from_raw(cancel) });
        Ok(())
    });
}

/// The token of an optional handle (a fresh one, never cancelled, for NULL).
///
/// # Safety
/// `cancel` is NULL or a live handle.
pub(crate) unsafe fn token(cancel: *const regmirror_cancel) -> CancellationToken {
    // SAFETY: NULL or a live handle per the caller's contract.
    unsafe { cancel.as_ref() }
        .map(|c| c.token.clone())
        .unwrap_or_default()
}
