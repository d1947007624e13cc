//! gRPC: `inference.GRPCInferenceService`, the KServe v2 / Open Inference Protocol service
//! with Triton's additions (model config, statistics, repository), so tritonclient.grpc
//! and perf_analyzer work against torchbridge unchanged.
//!
//! The messages are generated at build time from `proto/` (field numbers are the wire
//! contract). This module only translates: requests become [`Tensor`]s in `convert`, run
//! through the one shared path ([`AppState::infer`]), and errors become statuses in
//! `error`. Tensor bytes are not copied on the way in (raw request bytes become each
//! tensor's buffer) and are copied once on the way out, when tonic encodes the reply.
//! Triton's system shared-memory RPCs are offered (`shared_memory`); its CUDA
//! shared-memory, trace and log-settings RPCs are not: tonic answers them UNIMPLEMENTED,
//! which tritonclient reports as such.
//!
//! [`Tensor`]: torchbridge_core::Tensor

mod convert;
mod error;
mod guard;
pub mod health;
pub(crate) mod incoming;
mod infer;
mod logging;
mod models;
mod repository;
mod shared_memory;
mod stats;
mod trace;

use tokio_stream::wrappers::ReceiverStream;
use tonic::codec::CompressionEncoding;
use tonic::{Request, Response, Status, Streaming};
use torchbridge_core::{Error, Result};

use crate::AppState;
pub use guard::GuardLayer;
pub(crate) use models::default_model_filename;
use proto::grpc_inference_service_server::{GrpcInferenceService, GrpcInferenceServiceServer};
use proto::*;

/// The messages and the service trait, generated from `proto/grpc_service.proto`.
#[allow(
    clippy::all,
    clippy::pedantic,
    missing_debug_implementations,
    missing_docs
)]
pub mod proto {
    tonic::include_proto!("inference");
}

/// The gRPC service over `state`, ready for `tonic::transport::Server::add_service`.
///
/// Messages may be as large as `state.settings.limits.max_body_bytes` each way, as sent
/// and once inflated (tonic stops inflating at the limit); gzip and deflate request
/// compression are accepted. Replies are sent uncompressed (as Triton does by default):
/// tensors compress poorly and the CPU is better spent on inference. Authentication is
/// not here but in [`GuardLayer`], which `crate::serve` puts in front.
pub fn service(state: AppState) -> GrpcInferenceServiceServer<Inference> {
    let limit = state.settings.limits.max_body_bytes;
    GrpcInferenceServiceServer::new(Inference { state })
        .max_decoding_message_size(limit)
        .max_encoding_message_size(limit)
        .accept_compressed(CompressionEncoding::Gzip)
        .accept_compressed(CompressionEncoding::Deflate)
}

/// The `GRPCInferenceService` implementation; build it with [`service`].
#[derive(Debug, Clone)]
pub struct Inference {
    state: AppState,
}

impl Inference {
    /// Refuses (PERMISSION_DENIED) when the server's model control is off.
    fn model_control(&self) -> Result<(), Status> {
        if self.state.settings.model_control {
            return Ok(());
        }
        Err(Status::permission_denied(crate::state::MODEL_CONTROL_OFF))
    }
}

/// Answers with `result`, logging a failure once.
fn reply<T>(rpc: &'static str, model: &str, result: Result<T>) -> Result<Response<T>, Status> {
    result
        .map(Response::new)
        .map_err(|e| error::failed(rpc, model, "", &e))
}

/// A CUDA shared-memory registration is answered this, as over HTTP.
fn no_cuda_shared_memory() -> Error {
    Error::InvalidInput(
        "CUDA shared memory is not supported by torchbridge; use system shared memory \
         (SystemSharedMemoryRegister) or send the tensors in the request"
            .into(),
    )
}

/// Runs blocking work (files, model loading) off the async threads.
async fn blocking<T: Send + 'static>(
    model: &str,
    work: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<T> {
    tokio::task::spawn_blocking(work).await.unwrap_or_else(|e| {
        Err(Error::Inference {
            model: model.to_string(),
            message: format!("the server task panicked: {e}"),
        })
    })
}

#[tonic::async_trait]
impl GrpcInferenceService for Inference {
    async fn server_live(
        &self,
        _: Request<ServerLiveRequest>,
    ) -> Result<Response<ServerLiveResponse>, Status> {
        Ok(Response::new(ServerLiveResponse { live: true }))
    }

    async fn server_ready(
        &self,
        _: Request<ServerReadyRequest>,
    ) -> Result<Response<ServerReadyResponse>, Status> {
        let ready = self.state.server_ready();
        Ok(Response::new(ServerReadyResponse { ready }))
    }

    async fn model_ready(
        &self,
        request: Request<ModelReadyRequest>,
    ) -> Result<Response<ModelReadyResponse>, Status> {
        let request = request.into_inner();
        reply(
            "ModelReady",
            &request.name,
            models::ready(&self.state, &request),
        )
    }

    async fn server_metadata(
        &self,
        _: Request<ServerMetadataRequest>,
    ) -> Result<Response<ServerMetadataResponse>, Status> {
        Ok(Response::new(models::server_metadata(&self.state)))
    }

    async fn model_metadata(
        &self,
        request: Request<ModelMetadataRequest>,
    ) -> Result<Response<ModelMetadataResponse>, Status> {
        let request = request.into_inner();
        let result = models::metadata(&self.state, &request);
        reply("ModelMetadata", &request.name, result)
    }

    async fn model_infer(
        &self,
        request: Request<ModelInferRequest>,
    ) -> Result<Response<ModelInferResponse>, Status> {
        infer::infer(&self.state, "ModelInfer", request.into_inner())
            .await
            .map(Response::new)
    }

    type ModelStreamInferStream = ReceiverStream<Result<ModelStreamInferResponse, Status>>;

    async fn model_stream_infer(
        &self,
        request: Request<Streaming<ModelInferRequest>>,
    ) -> Result<Response<Self::ModelStreamInferStream>, Status> {
        let stream = infer::stream(self.state.clone(), request.into_inner());
        Ok(Response::new(stream))
    }

    async fn model_config(
        &self,
        request: Request<ModelConfigRequest>,
    ) -> Result<Response<ModelConfigResponse>, Status> {
        let request = request.into_inner();
        let result = models::config(&self.state, &request).await;
        reply("ModelConfig", &request.name, result)
    }

    async fn model_statistics(
        &self,
        request: Request<ModelStatisticsRequest>,
    ) -> Result<Response<ModelStatisticsResponse>, Status> {
        let request = request.into_inner();
        let result = stats::statistics(&self.state, &request);
        reply("ModelStatistics", &request.name, result)
    }

    async fn repository_index(
        &self,
        request: Request<RepositoryIndexRequest>,
    ) -> Result<Response<RepositoryIndexResponse>, Status> {
        let result = repository::index(&self.state, request.into_inner()).await;
        reply("RepositoryIndex", "", result)
    }

    async fn repository_model_load(
        &self,
        request: Request<RepositoryModelLoadRequest>,
    ) -> Result<Response<RepositoryModelLoadResponse>, Status> {
        self.model_control()?;
        let request = request.into_inner();
        let name = request.model_name.clone();
        reply(
            "RepositoryModelLoad",
            &name,
            repository::load(&self.state, request).await,
        )
    }

    async fn repository_model_unload(
        &self,
        request: Request<RepositoryModelUnloadRequest>,
    ) -> Result<Response<RepositoryModelUnloadResponse>, Status> {
        self.model_control()?;
        let request = request.into_inner();
        let name = request.model_name.clone();
        reply(
            "RepositoryModelUnload",
            &name,
            repository::unload(&self.state, request).await,
        )
    }

    async fn system_shared_memory_status(
        &self,
        request: Request<SystemSharedMemoryStatusRequest>,
    ) -> Result<Response<SystemSharedMemoryStatusResponse>, Status> {
        let request = request.into_inner();
        let result = shared_memory::status(&self.state, &request);
        reply("SystemSharedMemoryStatus", "", result)
    }

    async fn system_shared_memory_register(
        &self,
        request: Request<SystemSharedMemoryRegisterRequest>,
    ) -> Result<Response<SystemSharedMemoryRegisterResponse>, Status> {
        let request = request.into_inner();
        let result = shared_memory::register(&self.state, &request);
        reply("SystemSharedMemoryRegister", "", result)
    }

    async fn system_shared_memory_unregister(
        &self,
        request: Request<SystemSharedMemoryUnregisterRequest>,
    ) -> Result<Response<SystemSharedMemoryUnregisterResponse>, Status> {
        let request = request.into_inner();
        let response = shared_memory::unregister(&self.state, &request);
        Ok(Response::new(response))
    }

    async fn cuda_shared_memory_status(
        &self,
        _: Request<CudaSharedMemoryStatusRequest>,
    ) -> Result<Response<CudaSharedMemoryStatusResponse>, Status> {
        // No CUDA region is ever registered (a CPU-only Triton answers the same).
        Ok(Response::new(CudaSharedMemoryStatusResponse::default()))
    }

    async fn cuda_shared_memory_register(
        &self,
        _: Request<CudaSharedMemoryRegisterRequest>,
    ) -> Result<Response<CudaSharedMemoryRegisterResponse>, Status> {
        reply("CudaSharedMemoryRegister", "", Err(no_cuda_shared_memory()))
    }

    async fn cuda_shared_memory_unregister(
        &self,
        _: Request<CudaSharedMemoryUnregisterRequest>,
    ) -> Result<Response<CudaSharedMemoryUnregisterResponse>, Status> {
        // Nothing to unregister (perf_analyzer unregisters every CUDA region as it ends).
        Ok(Response::new(CudaSharedMemoryUnregisterResponse::default()))
    }

    async fn trace_setting(
        &self,
        request: Request<TraceSettingRequest>,
    ) -> Result<Response<TraceSettingResponse>, Status> {
        let request = request.into_inner();
        let model = request.model_name.clone();
        reply("TraceSetting", &model, trace::setting(&self.state, request))
    }

    async fn log_settings(
        &self,
        request: Request<LogSettingsRequest>,
    ) -> Result<Response<LogSettingsResponse>, Status> {
        let request = request.into_inner();
        reply("LogSettings", "", logging::settings(&self.state, request))
    }
}

/// The request conversion path for the fuzz target (`crate::fuzzing`).
#[cfg(feature = "fuzzing")]
pub(crate) fn fuzz_convert(
    request: ModelInferRequest,
    limits: &crate::Limits,
    model: &torchbridge_core::ModelMetadata,
) {
    let _ = convert::version(&request.model_version);
    let _ = convert::timeout(request.parameters.get("timeout"));
    if limits
        .check_count("requested outputs", request.outputs.len())
        .is_ok()
    {
        let _ = convert::check_requested(model, &request.outputs);
    }
    let no_regions = crate::SharedMemory::default();
    let Ok(tensors) = convert::inputs(
        request.inputs,
        request.raw_input_contents,
        limits,
        &no_regions,
    ) else {
        return;
    };
    for t in &tensors {
        t.check_bytes().expect("a converted tensor is consistent");
    }
    let _ = model.prepare(tensors.clone());
    let no_labels = torchbridge_core::OutputLabels::default();
    let response = convert::response(
        model,
        &no_labels,
        request.id,
        tensors,
        &[],
        &[],
        &no_regions,
    )
    .expect("no output is placed in shared memory");
    let _ = prost::Message::encode_to_vec(&response);
}
