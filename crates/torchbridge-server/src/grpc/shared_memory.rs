//! The system shared-memory RPCs, and the `shared_memory_*` parameters of inputs and
//! requested outputs as gRPC carries them.

use std::collections::HashMap;

use torchbridge_core::{Error, Result};

use super::proto::infer_parameter::ParameterChoice;
use super::proto::system_shared_memory_status_response::RegionStatus;
use super::proto::{
    InferParameter, SystemSharedMemoryRegisterRequest, SystemSharedMemoryRegisterResponse,
    SystemSharedMemoryStatusRequest, SystemSharedMemoryStatusResponse,
    SystemSharedMemoryUnregisterRequest, SystemSharedMemoryUnregisterResponse,
};
use crate::{AppState, Placement};

fn nonempty(name: &str) -> Option<&str> {
    Some(name).filter(|n| !n.is_empty())
}

pub(super) fn status(
    state: &AppState,
    request: &SystemSharedMemoryStatusRequest,
) -> Result<SystemSharedMemoryStatusResponse> {
    let regions = state
        .shared_memory
        .status(nonempty(&request.name))?
        .into_iter()
        .map(|s| {
            let status = RegionStatus {
                name: s.name.clone(),
                key: s.key,
                offset: s.offset,
                byte_size: s.byte_size,
            };
            (s.name, status)
        })
        .collect();
    Ok(SystemSharedMemoryStatusResponse { regions })
}

pub(super) fn register(
    state: &AppState,
    request: &SystemSharedMemoryRegisterRequest,
) -> Result<SystemSharedMemoryRegisterResponse> {
    let SystemSharedMemoryRegisterRequest {
        name,
        key,
        offset,
        byte_size,
    } = request;
    state
        .shared_memory
        .register(name, key, *offset, *byte_size)?;
    tracing::info!(region = %name, key = %key, byte_size, "shared memory registered");
    Ok(SystemSharedMemoryRegisterResponse {})
}

pub(super) fn unregister(
    state: &AppState,
    request: &SystemSharedMemoryUnregisterRequest,
) -> SystemSharedMemoryUnregisterResponse {
    state.shared_memory.unregister(nonempty(&request.name));
    SystemSharedMemoryUnregisterResponse {}
}

/// Where a tensor's `shared_memory_*` parameters place it, if they do.
pub(super) fn placement(
    tensor: &str,
    parameters: &HashMap<String, InferParameter>,
) -> Result<Option<Placement>> {
    let choice = |key: &str| {
        parameters
            .get(key)
            .and_then(|p| p.parameter_choice.as_ref())
    };
    let region = match choice("shared_memory_region") {
        None => None,
        Some(ParameterChoice::StringParam(s)) => Some(s.clone()),
        Some(_) => return Err(wrong_type(tensor, "shared_memory_region", "a string")),
    };
    let number = |key: &str| match choice(key) {
        None => Ok(None),
        Some(ParameterChoice::Int64Param(n)) => u64::try_from(*n)
            .map(Some)
            .map_err(|_| wrong_type(tensor, key, "a number ≥ 0")),
        Some(ParameterChoice::Uint64Param(n)) => Ok(Some(*n)),
        Some(_) => Err(wrong_type(tensor, key, "a number ≥ 0")),
    };
    Placement::from_parameters(
        tensor,
        region,
        number("shared_memory_byte_size")?,
        number("shared_memory_offset")?,
    )
}

fn wrong_type(tensor: &str, key: &str, expected: &str) -> Error {
    Error::InvalidInput(format!(
        "tensor `{tensor}`: parameter `{key}` must be {expected}"
    ))
}

/// The parameters that tell the client where an output was put.
pub(super) fn output_parameters(at: &Placement, written: usize) -> HashMap<String, InferParameter> {
    let param = |choice| InferParameter {
        parameter_choice: Some(choice),
    };
    let mut parameters = HashMap::from([
        (
            "shared_memory_region".to_string(),
            param(ParameterChoice::StringParam(at.region.clone())),
        ),
        (
            "shared_memory_byte_size".to_string(),
            param(ParameterChoice::Int64Param(written as i64)),
        ),
    ]);
    if at.offset != 0 {
        parameters.insert(
            "shared_memory_offset".to_string(),
            param(ParameterChoice::Int64Param(at.offset as i64)),
        );
    }
    parameters
}
