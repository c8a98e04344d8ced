//! Turning a mirror's source settings into a [`SourceRegistry`]: the [`SourceConnector`] trait
//! and [`StaticConnector`], which serves one registry value for every mirror.

use std::fmt;
use std::sync::Arc;

use crate::config::MirrorConfig;
use crate::error::Result;
use crate::registry::SourceRegistry;

/// Makes the registry client a mirror's source is read through, from the mirror's source
/// reference, credentials, TLS and proxy settings. Called once per run.
pub trait SourceConnector: Send + Sync + fmt::Debug {
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
