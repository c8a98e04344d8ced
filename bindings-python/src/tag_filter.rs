//! `regmirror.TagFilter`: tag patterns (SEMANTICS.md §2) for Python.

use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;
use pyo3::types::{PyList, PyString};

use crate::errors::to_py;

/// A compiled list of tag patterns: globs, `regex:`, `semver:` and `!` exclusions.
#[pyclass(frozen, module = "regmirror")]
pub(crate) struct TagFilter {
    inner: regmirror::TagFilter,
}

#[pymethods]
impl TagFilter {
    /// `patterns` is one comma-separated string or a sequence of patterns.
    #[new]
    fn new(patterns: &Bound<'_, PyAny>) -> PyResult<Self> {
        let inner = match patterns.cast::<PyString>() {
            Ok(list) => regmirror::TagFilter::parse(&list.to_cow()?),
            Err(_) => regmirror::TagFilter::new(strings(patterns, "patterns")?),
        };
        inner.map(|inner| TagFilter { inner }).map_err(to_py)
    }

    /// Whether `tag` is selected (whole tag, case-sensitive).
    fn matches(&self, tag: &str) -> bool {
        self.inner.matches(tag)
    }

    /// The selected tags, sorted and deduplicated.
    fn select(&self, py: Python<'_>, tags: &Bound<'_, PyAny>) -> PyResult<Vec<String>> {
        let tags = strings(tags, "tags")?;
        Ok(py.detach(|| self.inner.select(&tags)))
    }

    /// The patterns, split and trimmed, in the order given.
    #[getter]
    fn patterns(&self) -> Vec<String> {
        self.inner.patterns().to_vec()
    }

    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        let patterns = PyList::new(py, self.inner.patterns())?;
        Ok(format!("TagFilter({})", patterns.repr()?))
    }
}

/// An iterable of `str` as strings. A lone `str` is refused: iterating it would give characters.
pub(crate) fn strings(items: &Bound<'_, PyAny>, what: &str) -> PyResult<Vec<String>> {
    if items.is_instance_of::<PyString>() {
        return Err(PyTypeError::new_err(format!(
            "{what} must be an iterable of str, not a single str"
        )));
    }
    let iter = items.try_iter().map_err(|_| {
        PyTypeError::new_err(format!(
            "{what} must be an iterable of str, not {}",
            type_name(items)
        ))
    })?;
    iter.map(|item| {
        let item = item?;
        item.extract::<String>().map_err(|_| {
            PyTypeError::new_err(format!(
                "{what} must contain only str, found {}",
                type_name(&item)
            ))
        })
    })
    .collect()
}

fn type_name(obj: &Bound<'_, PyAny>) -> String {
    obj.get_type()
        .name()
        .map_or_else(|_| "an object".to_owned(), |n| n.to_string())
}
