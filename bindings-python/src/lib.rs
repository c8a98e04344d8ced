//! The native module `regmirror._native`, re-exported by the pure-Python package `regmirror`
//! (`python/regmirror/__init__.py`). Thin: argument conversion and error mapping only.

use pyo3::prelude::*;

mod bridge;
mod errors;
mod mirror;
mod mirrors;
mod tag_filter;

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    // The default of `concurrency=`: Python shows a non-literal default as `...`, and the stub
    // repeats the number, so it is exported for callers and the stub's test alike.
    m.add(
        "DEFAULT_CONCURRENCY",
        regmirror::engine::DEFAULT_CONCURRENCY,
    )?;
    // The same for `max_tags=`.
    m.add(
        "DEFAULT_MAX_TAGS",
        regmirror::registry::http::DEFAULT_MAX_TAGS,
    )?;
    m.add_class::<tag_filter::TagFilter>()?;
    m.add_class::<mirror::Mirror>()?;
    m.add_class::<mirror::AsyncMirror>()?;
    m.add_class::<mirrors::Mirrors>()?;
    m.add_class::<mirrors::AsyncMirrors>()?;
    m.add_class::<bridge::CancelToken>()?;
    errors::register(m)?;
    Ok(())
}
