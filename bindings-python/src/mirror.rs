//! `regmirror.Mirror` (blocking, releases the GIL) and `regmirror.AsyncMirror` (asyncio): one
//! mirror from a source to a destination, synced on demand without a state store
//! ([`regmirror::oneshot::OneShotSync`]), and the `SyncReport` a run returns.
//!
//! A run is a task on regmirror's tokio runtime that the calling Python code waits for; when
//! the wait is given up (Ctrl-C in `Mirror.sync()`, a cancelled asyncio task awaiting
//! `AsyncMirror.sync()`), the run is cancelled the engine's way: it stops after the units of
//! work in flight and is not rolled back (SEMANTICS.md §5).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use pyo3::prelude::*;
use pyo3::types::{PyList, PyString};
use regmirror::engine::SyncOptions;
use regmirror::oneshot::{Access, Location, OneShotSync};
use regmirror::registry::http::AddressGuard;
use regmirror::{Credentials, Error, ErrorKind, ProxyConfig};

use crate::bridge::{self, CancelToken};
use crate::errors::to_py;
use crate::tag_filter::strings;

/// The constructor both classes share: one signature, one conversion.
macro_rules! one_shot_class {
    ($class:ident { $($methods:tt)* }) => {
        #[pymethods]
        impl $class {
            /// Settings are checked here: an invalid pattern, reference or option raises at once.
            #[new]
            #[pyo3(signature = (
                        source, to, tags, *,
                        architectures = Vec::new(),
                        rollback = "failed_tags_only",
                        platform_index = "sparse",
                        referrers = "all",
                        keep_unselected = false,
                        source_credentials = None,
                        source_tls_verify = true,
                        source_cert_dir = None,
                        dest_credentials = None,
                        dest_tls_verify = true,
                        dest_cert_dir = None,
                        docker_config = false,
                        auth_file = None,
                        http_proxy = None,
                        https_proxy = None,
                        no_proxy = None,
                        concurrency = regmirror::engine::DEFAULT_CONCURRENCY as i64,
                        timeout = 3600.0,
                        ssrf_guard = false,
                        ssrf_allow = Vec::new(),
                        max_tags = regmirror::registry::http::DEFAULT_MAX_TAGS as i64,
                    ))]
            #[allow(clippy::too_many_arguments)] // Python keyword arguments, one per setting.
            fn new(
                source: &str,
                to: &str,
                tags: &Bound<'_, PyAny>,
                architectures: Vec<String>,
                rollback: &str,
                platform_index: &str,
                referrers: &str,
                keep_unselected: bool,
                source_credentials: Option<(String, String)>,
                source_tls_verify: bool,
                source_cert_dir: Option<PathBuf>,
                dest_credentials: Option<(String, String)>,
                dest_tls_verify: bool,
                dest_cert_dir: Option<PathBuf>,
                docker_config: bool,
                auth_file: Option<PathBuf>,
                http_proxy: Option<String>,
                https_proxy: Option<String>,
                no_proxy: Option<String>,
                concurrency: i64,
                timeout: f64,
                ssrf_guard: bool,
                ssrf_allow: Vec<String>,
                max_tags: i64,
            ) -> PyResult<Self> {
                let tags = match tags.cast::<PyString>() {
                    Ok(list) => vec![list.to_cow()?.into_owned()],
                    Err(_) => strings(tags, "tags")?,
                };
                let access = |credentials: Option<(String, String)>,
                              tls_verify,
                              cert_dir: Option<PathBuf>| Access {
                    credentials: credentials
                        .map(|(user, password)| Credentials::new(user, password)),
                    tls_verify,
                    docker_config: docker_config || auth_file.is_some(),
                    auth_file: auth_file.clone(),
                    ca_certs: cert_dir.into_iter().collect(),
                    ..Access::default()
                };
                let build = || -> regmirror::Result<OneShotSync> {
                    let mut sync = OneShotSync::new(
                        source
                            .parse::<Location>()
                            .map_err(|e| e.context("source"))?,
                        to.parse().map_err(|e: Error| e.context("to"))?,
                        tags,
                    );
                    sync.architectures = architectures;
                    sync.rollback = rollback.parse()?;
                    sync.platform_index = platform_index.parse()?;
                    sync.referrers = referrers.parse()?;
                    sync.keep_unselected = keep_unselected;
                    sync.source_access = Access {
                        address_guard: AddressGuard::switch(ssrf_guard, &ssrf_allow)
                            .map_err(|e| e.context("ssrf_allow"))?,
                        proxy: ProxyConfig {
                            http_proxy,
                            https_proxy,
                            no_proxy,
                        },
                        ..access(source_credentials, source_tls_verify, source_cert_dir)
                    };
                    sync.dest_access = access(dest_credentials, dest_tls_verify, dest_cert_dir);
                    sync.concurrency = count("concurrency", concurrency)?;
                    sync.max_tags = count("max_tags", max_tags)?;
                    sync.timeout = seconds("timeout", timeout)?;
                    sync.config()?;
                    Ok(sync)
                };
                Ok($class {
                    sync: Arc::new(build().map_err(to_py)?),
                })
            }

            $($methods)*
        }
    };
}

/// A count Python passed as an int: a negative one is an invalid setting, not an overflow.
fn count(name: &str, n: i64) -> regmirror::Result<usize> {
    usize::try_from(n).map_err(|_| {
        Error::new(
            ErrorKind::InvalidConfig,
            format!("{name} must be greater than 0, not {n}"),
        )
    })
}

/// A duration Python passed as seconds.
pub(crate) fn seconds(name: &str, secs: f64) -> regmirror::Result<Duration> {
    Duration::try_from_secs_f64(secs)
        .ok()
        .filter(|d| !d.is_zero())
        .ok_or_else(|| {
            Error::new(
                ErrorKind::InvalidConfig,
                format!("{name}: {secs} is not a positive number of seconds"),
            )
        })
}

/// One mirror: `source`'s tags selected by `tags`, kept in `to`. `sync()` runs once, blocking.
#[pyclass(frozen, module = "regmirror")]
pub(crate) struct Mirror {
    sync: Arc<OneShotSync>,
}

one_shot_class!(Mirror {
    /// Run one sync and return its report; a failed tag is in the report, not an exception.
    /// Ctrl-C raises `KeyboardInterrupt` at once and cancels the run; so does `cancel.cancel()`
    /// from another thread, and the report then says `"cancelled"`.
    #[pyo3(signature = (*, progress = None, cancel = None))]
    fn sync(
        &self,
        py: Python<'_>,
        progress: Option<&Bound<'_, PyAny>>,
        cancel: Option<&CancelToken>,
    ) -> PyResult<Py<PyAny>> {
        let (progress, drained) = bridge::progress(progress)?;
        let cancel = cancel.map_or_else(Default::default, |c| c.0.child_token());
        let options = SyncOptions {
            cancel: cancel.clone(),
            progress,
            ..SyncOptions::default()
        };
        let sync = Arc::clone(&self.sync);
        let report = bridge::block_on(py, cancel, async move { sync.run(options).await });
        bridge::drain(py, drained);
        bridge::record(py, "SyncReport", &report?)
    }

    /// What `sync()` would do, changing nothing: per tag copy / current / delete, and the bytes
    /// to move.
    fn preview(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        let sync = Arc::clone(&self.sync);
        let preview = bridge::block_on(py, Default::default(), async move {
            sync.preview(SyncOptions::default()).await
        })?;
        bridge::record(py, "SyncPreview", &preview)
    }

    /// Where the images come from.
    #[getter]
    fn source(&self) -> String {
        self.sync.source.to_string()
    }

    /// Where they go.
    #[getter]
    fn to(&self) -> String {
        self.sync.to.to_string()
    }

    /// The tag patterns, as given.
    #[getter]
    fn tags(&self) -> Vec<String> {
        self.sync.tags.clone()
    }

    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        describe(py, "Mirror", &self.sync)
    }
});

/// `Mirror` for asyncio: the same arguments; `await mirror.sync()`.
#[pyclass(frozen, module = "regmirror")]
pub(crate) struct AsyncMirror {
    sync: Arc<OneShotSync>,
}

one_shot_class!(AsyncMirror {
    /// Run one sync on regmirror's tokio runtime: a coroutine whose result is the report. The
    /// run starts when the coroutine is first awaited; cancelling the task awaiting it (or
    /// `cancel.cancel()`) cancels the run.
    #[pyo3(signature = (*, progress = None, cancel = None))]
    fn sync<'py>(
        &self,
        py: Python<'py>,
        progress: Option<&Bound<'_, PyAny>>,
        cancel: Option<&CancelToken>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let (progress, _) = bridge::progress(progress)?;
        let sync = Arc::clone(&self.sync);
        bridge::coroutine(
            py,
            c"sync",
            cancel,
            false,
            move |cancel| {
                let options = SyncOptions {
                    cancel,
                    progress,
                    ..SyncOptions::default()
                };
                async move { sync.run(options).await }
            },
            |py, report| bridge::record(py, "SyncReport", &report),
        )
    }

    /// What `sync()` would do, changing nothing (a coroutine).
    fn preview<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let sync = Arc::clone(&self.sync);
        bridge::coroutine(
            py,
            c"preview",
            None,
            false,
            move |cancel| {
                let options = SyncOptions {
                    cancel,
                    ..SyncOptions::default()
                };
                async move { sync.preview(options).await }
            },
            |py, preview| bridge::record(py, "SyncPreview", &preview),
        )
    }

    /// Where the images come from.
    #[getter]
    fn source(&self) -> String {
        self.sync.source.to_string()
    }

    /// Where they go.
    #[getter]
    fn to(&self) -> String {
        self.sync.to.to_string()
    }

    /// The tag patterns, as given.
    #[getter]
    fn tags(&self) -> Vec<String> {
        self.sync.tags.clone()
    }

    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        describe(py, "AsyncMirror", &self.sync)
    }
});

/// `Mirror('quay.io/a/b' -> 'oci:out', tags=['v*'])`; credentials never appear.
fn describe(py: Python<'_>, class: &str, sync: &OneShotSync) -> PyResult<String> {
    let text = |s: String| PyString::new(py, &s).repr();
    Ok(format!(
        "{class}({} -> {}, tags={})",
        text(sync.source.to_string())?,
        text(sync.to.to_string())?,
        PyList::new(py, &sync.tags)?.repr()?
    ))
}
