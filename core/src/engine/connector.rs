//! Turning a mirror's source settings into a [`SourceRegistry`]: the [`SourceConnector`] trait,
//! [`HttpConnector`] (the default: OCI distribution over HTTP), and [`StaticConnector`], which
//! serves one registry value for every mirror.

use std::collections::HashMap;
use std::fmt;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use crate::config::{Credentials, MirrorConfig, ProxyConfig};
use crate::error::Result;
use crate::registry::SourceRegistry;
use crate::registry::http::{HttpOptions, HttpRegistry};

/// Makes the registry client a mirror's source is read through, from the mirror's source
/// reference, credentials, TLS and proxy settings. Called once per run.
pub trait SourceConnector: Send + Sync + fmt::Debug {
    /// The client for `config`'s source. An error fails the run ("connecting to the source:
    /// ...") before it lists any tag.
    fn connect(&self, config: &MirrorConfig) -> Result<Arc<dyn SourceRegistry>>;
}

/// Reads every mirror's source from one given registry (tests, OCI layout sources, embedders
/// that build their own client). The mirror's source repository path still selects the
/// repository inside it.
#[derive(Clone)]
pub struct StaticConnector(pub Arc<dyn SourceRegistry>);

impl fmt::Debug for StaticConnector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("StaticConnector").field(&self.0).finish()
    }
}

impl SourceConnector for StaticConnector {
    fn connect(&self, _config: &MirrorConfig) -> Result<Arc<dyn SourceRegistry>> {
        Ok(Arc::clone(&self.0))
    }
}

/// What makes two mirrors' sources shareable by one client.
#[derive(PartialEq, Eq, Hash)]
struct ClientKey {
    host: String,
    credentials: Option<(String, String)>,
    verify_tls: bool,
    ca_certs: Vec<PathBuf>,
    proxy: (Option<String>, Option<String>, Option<String>),
}

/// Connects each mirror's source with an [`HttpRegistry`]. Mirrors with the same host,
/// credentials, TLS and proxy settings share one client (connection pool, token cache) across
/// runs. The mirror's `source_credentials`, `verify_tls` and `proxy` override the base options,
/// and its `source_ca_certs` are trusted besides the base options' `ca_certs`;
/// a mirror without credentials is anonymous unless the base options enable the docker config.
pub struct HttpConnector {
    base: HttpOptions,
    clients: Mutex<HashMap<ClientKey, HttpRegistry>>,
}

impl fmt::Debug for HttpConnector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpConnector")
            .field("base", &self.base)
            .finish_non_exhaustive()
    }
}

impl Default for HttpConnector {
    /// Default HTTP options, without docker-config credential lookup (a mirror without
    /// credentials is anonymous, as in Quay).
    fn default() -> Self {
        HttpConnector::new(HttpOptions {
            docker_config: false,
            ..HttpOptions::default()
        })
    }
}

impl HttpConnector {
    /// Connect with `base` options (CA bundles, timeouts, retries…) for every mirror.
    pub fn new(base: HttpOptions) -> Self {
        HttpConnector {
            base,
            clients: Mutex::new(HashMap::new()),
        }
    }
}

impl SourceConnector for HttpConnector {
    fn connect(&self, config: &MirrorConfig) -> Result<Arc<dyn SourceRegistry>> {
        let host = config.source.registry().to_owned();
        let proxy = if config.proxy == ProxyConfig::default() {
            self.base.proxy.clone()
        } else {
            config.proxy.clone()
        };
        let credentials: Option<Credentials> = config
            .source_credentials
            .clone()
            .or_else(|| self.base.credentials.clone());
        let key = ClientKey {
            host: host.clone(),
            credentials: credentials
                .as_ref()
                .map(|c| (c.username.clone(), c.password.clone())),
            verify_tls: config.verify_tls,
            ca_certs: config.source_ca_certs.clone(),
            proxy: (
                proxy.http_proxy.clone(),
                proxy.https_proxy.clone(),
                proxy.no_proxy.clone(),
            ),
        };
        let mut clients = self
            .clients
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(client) = clients.get(&key) {
            return Ok(Arc::new(client.clone()));
        }
        let mut ca_certs = self.base.ca_certs.clone();
        ca_certs.extend(config.source_ca_certs.iter().cloned());
        let options = HttpOptions {
            credentials,
            tls_verify: config.verify_tls && self.base.tls_verify,
            ca_certs,
            proxy,
            ..self.base.clone()
        };
        let client = HttpRegistry::new(&host, options)?;
        clients.insert(key, client.clone());
        Ok(Arc::new(client))
    }
}
