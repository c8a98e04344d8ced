//! `regmirror_tag_filter`: tag patterns (SEMANTICS.md §2) for C callers.

use std::ffi::c_char;

use engine::TagFilter;

use crate::guard::{self, Failure, non_null, utf8};
use crate::result_code::regmirror_result;
use crate::strings::to_owned_c;

/// A compiled list of tag patterns. Immutable: one filter may be used from many threads.
#[derive(Debug)]
pub struct regmirror_tag_filter {
    filter: TagFilter,
}

/// Compile `patterns`, a comma-separated list of globs (`v3.*`), `regex:` and `semver:`
/// patterns and `!` exclusions (`"v3.*, !*-rc*"`). On success `*out` receives a filter to
/// release with `regmirror_tag_filter_free`; on failure `*out` is left alone and
/// `regmirror_last_error_message()` names the pattern and the problem
/// (`REGMIRROR_INVALID_PATTERN`).
///
/// # Safety
/// `patterns` is NULL or a NUL-terminated string; `out` is NULL or valid for a write.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn regmirror_tag_filter_new(
    patterns: *const c_char,
    out: *mut *mut regmirror_tag_filter,
) -> regmirror_result {
    guard::guard(|| {
        // SAFETY: forwarded from this function's contract.
        let patterns = unsafe { utf8(patterns, "patterns") }?;
        let out = non_null(out, "out")?;
        let filter = Box::new(regmirror_tag_filter {
            filter: TagFilter::parse(patterns)?,
        });
        // SAFETY: `out` is non-NULL and the caller promises it is valid for a write.
        unsafe { out.write(Box::into_raw(filter)) };
        Ok(())
    })
}

/// Whether `filter` selects `tag` (whole tag, case-sensitive). The answer goes to `*out`.
///
/// # Safety
/// `filter` is NULL or a live filter; `tag` is NULL or a NUL-terminated string; `out` is NULL
/// or valid for a write.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn regmirror_tag_filter_matches(
    filter: *const regmirror_tag_filter,
    tag: *const c_char,
    out: *mut bool,
) -> regmirror_result {
    guard::guard(|| {
        let filter = non_null(filter.cast_mut(), "filter")?;
        // SAFETY: forwarded from this function's contract.
        let tag = unsafe { utf8(tag, "tag") }?;
        let out = non_null(out, "out")?;
        // SAFETY: a live filter, only read.
        let matched = unsafe { filter.as_ref() }.filter.matches(tag);
        // SAFETY: non-NULL and valid for a write per the contract.
        unsafe { out.write(matched) };
        Ok(())
    })
}

/// Select from `tags_len` tags at `tags` the ones `filter` selects, sorted and deduplicated.
/// `*out` receives them as one newline-separated string (`""` when none is selected; tags
/// never contain newlines), to release with `regmirror_string_free`. `tags` may be NULL
/// when `tags_len` is 0.
///
/// # Safety
/// `filter` is NULL or a live filter; `tags` is NULL or points to `tags_len` pointers, each
/// NULL or a NUL-terminated string; `out` is NULL or valid for a write.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn regmirror_tag_filter_select(
    filter: *const regmirror_tag_filter,
    tags: *const *const c_char,
    tags_len: usize,
    out: *mut *mut c_char,
) -> regmirror_result {
    guard::guard(|| {
        let filter = non_null(filter.cast_mut(), "filter")?;
        let tags: &[*const c_char] = if tags_len == 0 {
            &[]
        } else {
            let tags = non_null(tags.cast_mut(), "tags")?;
            // SAFETY: the caller promises `tags_len` readable pointers at `tags`.
            unsafe { std::slice::from_raw_parts(tags.as_ptr(), tags_len) }
        };
        let tags = tags
            .iter()
            .enumerate()
            // SAFETY: each element is NULL or a NUL-terminated string, per the contract.
            .map(|(i, &tag)| unsafe { utf8(tag, format_args!("tags[{i}]")) })
            .collect::<Result<Vec<&str>, Failure>>()?;
        let out = non_null(out, "out")?;
        // SAFETY: a live filter, only read.
        let selected = unsafe { filter.as_ref() }.filter.select(tags).join("\n");
        let selected = to_owned_c(selected)?;
        // SAFETY: non-NULL and valid for a write per the contract.
        unsafe { out.write(selected) };
        Ok(())
    })
}

/// Release a filter. `NULL` does nothing.
///
/// # Safety
/// `filter` is NULL or a filter from `regmirror_tag_filter_new` that has not been freed yet.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn regmirror_tag_filter_free(filter: *mut regmirror_tag_filter) {
    if filter.is_null() {
        return;
    }
    guard::guard(|| {
        // SAFETY: made by Box::into_raw in regmirror_tag_filter_new, freed once.
        drop(unsafe { Box::from_raw(filter) });
        Ok(())
    });
}
