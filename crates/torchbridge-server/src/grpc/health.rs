//! `grpc.health.v1.Health/Check`: the standard gRPC health check, for probes that speak
//! it (Kubernetes `grpc:` probes, grpc-health-probe, cloud load balancers) rather than
//! KServe's `ServerReady`. The server (service `""`) and the inference service are
//! SERVING when `ServerReady` says ready ([`AppState::server_ready`]), NOT_SERVING
//! otherwise; any other service is unknown (NOT_FOUND, as the protocol asks).

use tonic::{Request, Response, Status};

use crate::AppState;
use proto::health_check_response::ServingStatus;
use proto::health_server::{Health, HealthServer};
use proto::{HealthCheckRequest, HealthCheckResponse};

/// The messages and the service trait, generated from `proto/health.proto`.
#[allow(
    clippy::all,
    clippy::pedantic,
    missing_debug_implementations,
    missing_docs
)]
pub mod proto {
    tonic::include_proto!("grpc.health.v1");
}

/// The service names a check may ask about: the whole server, and the inference service.
const SERVICES: [&str; 2] = ["", "inference.GRPCInferenceService"];

/// The health service over `state`, for `tonic::transport::Server::add_service`.
pub fn service(state: AppState) -> HealthServer<HealthCheck> {
    HealthServer::new(HealthCheck { state })
}

/// The `Health` implementation; build it with [`service`].
#[derive(Debug, Clone)]
pub struct HealthCheck {
    state: AppState,
}

#[tonic::async_trait]
impl Health for HealthCheck {
    async fn check(
        &self,
        request: Request<HealthCheckRequest>,
    ) -> Result<Response<HealthCheckResponse>, Status> {
        let service = request.into_inner().service;
        if !SERVICES.contains(&service.as_str()) {
            return Err(Status::not_found(format!(
                "unknown service `{service}`: this server answers for \"\" (itself) and \
                 `inference.GRPCInferenceService`"
            )));
        }
        let status = match self.state.server_ready() {
            true => ServingStatus::Serving,
            false => ServingStatus::NotServing,
        };
        Ok(Response::new(HealthCheckResponse {
            status: status as i32,
        }))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use torchbridge_core::{Error, Registry};

    use super::*;
    use crate::ServerSettings;

    async fn check(health: &HealthCheck, service: &str) -> Result<i32, Status> {
        let request = Request::new(HealthCheckRequest {
            service: service.into(),
        });
        Ok(health.check(request).await?.into_inner().status)
    }

    #[tokio::test]
    async fn serving_once_every_model_has_loaded() {
        let repo = tempfile::tempdir().unwrap();
        let never = Arc::new(|_: &torchbridge_core::ModelDir| Err(Error::Unavailable("m".into())));
        let registry = Arc::new(Registry::new(repo.path(), never));
        registry.mark_loading(&["m".to_string()]);
        let health = HealthCheck {
            state: AppState::new(registry.clone(), ServerSettings::default()),
        };
        let not_serving = ServingStatus::NotServing as i32;
        assert_eq!(check(&health, "").await.unwrap(), not_serving);
        assert_eq!(
            check(&health, "inference.GRPCInferenceService")
                .await
                .unwrap(),
            not_serving
        );
        registry.remove("m");
        assert_eq!(
            check(&health, "").await.unwrap(),
            ServingStatus::Serving as i32
        );
        health.state.drain();
        assert_eq!(
            check(&health, "").await.unwrap(),
            not_serving,
            "a stop is coming"
        );
        let unknown = check(&health, "grpc.reflection").await.unwrap_err();
        assert_eq!(unknown.code(), tonic::Code::NotFound);
        assert!(
            unknown
                .message()
                .contains("unknown service `grpc.reflection`")
        );
    }
}
