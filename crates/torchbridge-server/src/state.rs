use std::sync::Arc;
use std::time::Duration;

use torchbridge_core::{InstancePool, Registry, Result, Tensor};

/// Settings every transport reads.
#[derive(Debug, Clone)]
pub struct ServerSettings {
    /// Largest request body accepted, in bytes (after decompression).
    pub max_body_bytes: usize,
    /// Default time a request may take before it is answered with a timeout.
    pub request_timeout: Duration,
    /// Engine versions reported in server metadata, e.g. `("onnxruntime", "1.31.1")`.
    pub runtime_versions: Vec<(&'static str, String)>,
}

impl Default for ServerSettings {
    fn default() -> Self {
        ServerSettings {
            max_body_bytes: 64 << 20,
            request_timeout: Duration::from_secs(60),
            runtime_versions: Vec::new(),
        }
    }
}

/// What every handler shares; cheap to clone.
#[derive(Debug, Clone)]
pub struct AppState {
    pub registry: Arc<Registry>,
    pub settings: Arc<ServerSettings>,
}

impl AppState {
    pub fn new(registry: Arc<Registry>, settings: ServerSettings) -> Self {
        AppState {
            registry,
            settings: Arc::new(settings),
        }
    }

    /// The one inference path: find the model, check the inputs, run, await.
    /// Returns the pool too, so callers can read its metadata for the response.
    pub async fn infer(
        &self,
        model: &str,
        version: Option<u64>,
        inputs: Vec<Tensor>,
    ) -> Result<(Arc<InstancePool>, Vec<Tensor>)> {
        let pool = self.registry.get(model, version)?;
        let batch = pool.metadata().prepare(inputs)?;
        let outputs = pool.run(batch).await?;
        Ok((pool, outputs))
    }
}
