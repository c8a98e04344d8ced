//! `TagFilter`: tag patterns (SEMANTICS.md §2) for JavaScript.

use napi::Either;
use napi_derive::napi;

use crate::errors::{ErrorCode, to_js};

/// A compiled list of tag patterns: shell-style globs matched against the whole tag,
/// case-sensitively (`*`, `?`, `[seq]`, `[!seq]`), plus `regex:`, `semver:` and `!`
/// exclusions. Invalid patterns throw an Error with `code === 'InvalidPattern'`.
#[napi]
#[derive(Debug)]
pub struct TagFilter {
    inner: regmirror::TagFilter,
}

#[napi]
impl TagFilter {
    /// `patterns`: one comma-separated string, or an array of patterns.
    #[napi(constructor)]
    pub fn new(patterns: Either<String, Vec<String>>) -> napi::Result<Self, ErrorCode> {
        let inner = match patterns {
            Either::A(list) => regmirror::TagFilter::parse(&list),
            Either::B(patterns) => regmirror::TagFilter::new(patterns),
        };
        inner.map(|inner| TagFilter { inner }).map_err(to_js)
    }

    /// Whether `tag` is selected.
    #[napi]
    pub fn matches(&self, tag: String) -> bool {
        self.inner.matches(&tag)
    }

    /// The selected tags, sorted and deduplicated.
    #[napi]
    pub fn select(&self, tags: Vec<String>) -> Vec<String> {
        self.inner.select(tags)
    }

    /// The patterns, split and trimmed, in the order given.
    #[napi(getter)]
    pub fn patterns(&self) -> Vec<String> {
        self.inner.patterns().to_vec()
    }
}
