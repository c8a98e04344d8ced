//! `Mirror`: one mirror from a source to a destination, synced on demand without a state store
//! ([`regmirror::oneshot::OneShotSync`]); `sync()` returns a Promise of a `SyncReport`,
//! `preview()` one of the `SyncPreview` a sync would follow.

use std::path::PathBuf;
use std::sync::Arc;

use napi::bindgen_prelude::PromiseRaw;
use napi::{Either, Env};
use napi_derive::napi;
use regmirror::oneshot::{Access, Location, OneShotSync};
use regmirror::registry::http::AddressGuard;
use regmirror::{Credentials as CoreCredentials, ProxyConfig};
use serde_json::Value;

use crate::convert::{seconds, whole_number};
use crate::errors::{ErrorCode, to_js};
use crate::run::{self, SyncOptions};

/// A username and a password or token. The password is never shown.
#[napi(object)]
#[derive(Clone)]
pub struct Credentials {
    pub username: String,
    pub password: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

/// What a `Mirror` copies, from where to where, and how.
#[napi(object)]
#[derive(Debug, Clone)]
pub struct MirrorOptions {
    /// A registry repository `host[:port]/path`, or an OCI image layout `oci:DIRECTORY`.
    pub source: String,
    /// Same forms as `source`; its tags end up exactly the selected ones.
    pub to: String,
    /// Tag patterns: one comma-separated string or an array.
    pub tags: Either<String, Vec<String>>,
    /// Copy only these platforms of multi-arch images (default: all).
    pub architectures: Option<Vec<String>>,
    /// `'failed_tags_only'` (default) or `'all_or_nothing'`.
    #[napi(ts_type = "'failed_tags_only' | 'all_or_nothing'")]
    pub rollback: Option<String>,
    /// `'sparse'` (default) or `'rewrite'`.
    #[napi(ts_type = "'sparse' | 'rewrite'")]
    pub platform_index: Option<String>,
    /// Which signatures, SBOMs and attestations travel with the images: `'all'` (default),
    /// `'none'`, or comma-separated artifact types.
    pub referrers: Option<String>,
    /// Keep destination tags the patterns do not select (default: prune them).
    pub keep_unselected: Option<bool>,
    pub source_credentials: Option<Credentials>,
    /// Verify the source's TLS certificate (default true); `false` also permits plain HTTP.
    pub source_tls_verify: Option<bool>,
    pub dest_credentials: Option<Credentials>,
    /// Verify the destination's TLS certificate (default true); `false` also permits plain HTTP.
    pub dest_tls_verify: Option<bool>,
    /// Use docker/podman stored credentials when none are given (default false).
    pub docker_config: Option<bool>,
    /// Stored logins (docker's `config.json` format) read from this file instead of the
    /// default locations, for both sides when no credentials are given.
    pub auth_file: Option<String>,
    /// `authFile` for the source only.
    pub source_auth_file: Option<String>,
    /// `authFile` for the destination only.
    pub dest_auth_file: Option<String>,
    /// A PEM file of CA certificates to trust for the source besides the system's.
    pub source_ca_file: Option<String>,
    /// A directory as docker's `certs.d/HOST` for the source: its `*.crt` CA certificates,
    /// and a client certificate as `client.cert` + `client.key`.
    pub source_cert_dir: Option<String>,
    /// `sourceCaFile` for the destination.
    pub dest_ca_file: Option<String>,
    /// `sourceCertDir` for the destination.
    pub dest_cert_dir: Option<String>,
    /// The proxy for plain-HTTP registries (default: `$http_proxy`), both sides.
    pub http_proxy: Option<String>,
    /// The proxy for HTTPS registries (default: `$https_proxy`), both sides.
    pub https_proxy: Option<String>,
    /// Hosts reached without a proxy, comma-separated (default: `$no_proxy`).
    pub no_proxy: Option<String>,
    /// Blob copies in flight at once, a whole number (default 8); small reads (manifest and
    /// blob HEADs) have their own allowance of four per copy, up to 32 per registry, and up to
    /// 8 times that to a far one.
    pub concurrency: Option<f64>,
    /// Upper bound for one run, in seconds (default 3600).
    pub timeout_seconds: Option<f64>,
    /// The SSRF guard (default false): refuse loopback, private, link-local, cloud-metadata and other non-public addresses for the source, its token service and its redirects.
    pub ssrf_guard: Option<bool>,
    /// Host names, addresses or CIDR networks (`'10.0.0.0/8'`) the SSRF guard lets through.
    pub ssrf_allow: Option<Vec<String>>,
    /// A registry listing more tags than this fails the run, a whole number (default 1000000).
    pub max_tags: Option<f64>,
}

/// One mirror: `source`'s tags selected by `tags`, kept in `to`. The constructor checks every
/// setting and throws (`err.code`: `'InvalidPattern'`, `'InvalidReference'`,
/// `'InvalidConfig'`).
#[napi]
#[derive(Debug)]
pub struct Mirror {
    sync: Arc<OneShotSync>,
}

#[napi]
impl Mirror {
    /// Check the settings; throws when one is invalid.
    #[napi(constructor)]
    pub fn new(options: MirrorOptions) -> napi::Result<Self, ErrorCode> {
        build(options).map(|sync| Mirror {
            sync: Arc::new(sync),
        })
    }

    /// Run one sync on regmirror's runtime; `options.onProgress` receives its progress. When
    /// `options.signal` aborts, the run stops after the work in flight (nothing is rolled
    /// back) and the promise rejects with an `Error` whose `name` is `'AbortError'` (as `fetch`
    /// and Node's own APIs reject), `code` `'Cancelled'`, `cause` the signal's `reason`, and
    /// `report` the run's `SyncReport` (what it did before it stopped); a signal already
    /// aborted rejects at once without running (no `report`). A run that ended before it
    /// noticed the abort resolves as usual.
    #[napi(ts_return_type = "Promise<SyncReport>")]
    pub fn sync<'env>(
        &self,
        env: &'env Env,
        options: Option<SyncOptions<'env>>,
    ) -> napi::Result<PromiseRaw<'env, Value>> {
        let sync = Arc::clone(&self.sync);
        run::spawn(
            env,
            options,
            |options| async move { sync.run(options).await },
        )
    }

    /// What `sync()` would do, changing nothing (the CLI's `--dry-run`): each selected tag's
    /// action (`'copy'`, `'current'`, `'skip'`, `'fail'`) with the bytes it would move, and the
    /// tags it would delete. `options` as for `sync()`.
    #[napi(ts_return_type = "Promise<SyncPreview>")]
    pub fn preview<'env>(
        &self,
        env: &'env Env,
        options: Option<SyncOptions<'env>>,
    ) -> napi::Result<PromiseRaw<'env, Value>> {
        let sync = Arc::clone(&self.sync);
        run::spawn(env, options, |options| async move {
            sync.preview(options).await
        })
    }

    /// Where the images come from.
    #[napi(getter)]
    pub fn source(&self) -> String {
        self.sync.source.to_string()
    }

    /// Where they go.
    #[napi(getter)]
    pub fn to(&self) -> String {
        self.sync.to.to_string()
    }

    /// The tag patterns, as given.
    #[napi(getter)]
    pub fn tags(&self) -> Vec<String> {
        self.sync.tags.clone()
    }
}

fn build(o: MirrorOptions) -> napi::Result<OneShotSync, ErrorCode> {
    let tags = match o.tags {
        Either::A(list) => vec![list],
        Either::B(tags) => tags,
    };
    let docker_config = o.docker_config.unwrap_or(false);
    let proxy = ProxyConfig {
        http_proxy: o.http_proxy,
        https_proxy: o.https_proxy,
        no_proxy: o.no_proxy,
    };
    let access = |credentials: Option<Credentials>,
                  tls_verify: Option<bool>,
                  auth_file: Option<String>,
                  ca: [Option<String>; 2]| Access {
        credentials: credentials.map(|c| CoreCredentials::new(c.username, c.password)),
        tls_verify: tls_verify.unwrap_or(true),
        docker_config,
        auth_file: auth_file.or_else(|| o.auth_file.clone()).map(PathBuf::from),
        ca_certs: ca.into_iter().flatten().map(PathBuf::from).collect(),
        proxy: proxy.clone(),
        ..Access::default()
    };
    let build = || -> regmirror::Result<OneShotSync> {
        let source = o
            .source
            .parse::<Location>()
            .map_err(|e| e.context("source"))?;
        let to = o.to.parse::<Location>().map_err(|e| e.context("to"))?;
        let mut sync = OneShotSync::new(source, to, tags);
        sync.architectures = o.architectures.unwrap_or_default();
        if let Some(rollback) = &o.rollback {
            sync.rollback = rollback.parse()?;
        }
        if let Some(platform_index) = &o.platform_index {
            sync.platform_index = platform_index.parse()?;
        }
        if let Some(referrers) = &o.referrers {
            sync.referrers = referrers.parse()?;
        }
        sync.keep_unselected = o.keep_unselected.unwrap_or(false);
        let allow = o.ssrf_allow.unwrap_or_default();
        sync.source_access = Access {
            address_guard: AddressGuard::switch(o.ssrf_guard.unwrap_or(false), &allow)
                .map_err(|e| e.context("ssrfAllow"))?,
            ..access(
                o.source_credentials,
                o.source_tls_verify,
                o.source_auth_file,
                [o.source_ca_file, o.source_cert_dir],
            )
        };
        sync.dest_access = access(
            o.dest_credentials,
            o.dest_tls_verify,
            o.dest_auth_file,
            [o.dest_ca_file, o.dest_cert_dir],
        );
        if let Some(n) = o.concurrency {
            sync.concurrency = whole_number("concurrency", n)?;
        }
        if let Some(n) = o.max_tags {
            sync.max_tags = whole_number("maxTags", n)?;
        }
        if let Some(secs) = o.timeout_seconds {
            sync.timeout = seconds("timeoutSeconds", secs)?;
        }
        sync.config()?;
        Ok(sync)
    };
    build().map_err(to_js)
}
