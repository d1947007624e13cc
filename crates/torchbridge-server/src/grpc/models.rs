//! Server and model metadata, model readiness and model configuration.

use torchbridge_core::{
    DataType, Device, ModelDir, ModelForm, ModelMetadata, Result, TensorSpec, VersionPolicy,
};

use super::convert;
use super::proto::model_config::SchedulingChoice;
use super::proto::model_instance_group::Kind;
use super::proto::model_metadata_response::TensorMetadata;
use super::proto::{
    self, ModelConfigRequest, ModelConfigResponse, ModelDynamicBatching, ModelInput,
    ModelInstanceGroup, ModelMetadataRequest, ModelMetadataResponse, ModelOutput, ModelParameter,
    ModelQueuePolicy, ModelReadyRequest, ModelReadyResponse, ServerMetadataResponse,
};
use crate::AppState;

pub(super) fn server_metadata(state: &AppState) -> ServerMetadataResponse {
    ServerMetadataResponse {
        name: "torchbridge".into(),
        version: env!("CARGO_PKG_VERSION").into(),
        extensions: crate::extensions(state)
            .into_iter()
            .map(String::from)
            .collect(),
    }
}

/// Ready when loaded (at that version, if one is named) and able to serve; an unknown
/// model is not ready.
pub(super) fn ready(state: &AppState, request: &ModelReadyRequest) -> Result<ModelReadyResponse> {
    let version = convert::version(&request.version)?;
    let ready = state.registry.ready(&request.name, version).is_ok();
    Ok(ModelReadyResponse { ready })
}

pub(super) fn metadata(
    state: &AppState,
    request: &ModelMetadataRequest,
) -> Result<ModelMetadataResponse> {
    let version = convert::version(&request.version)?;
    let pool = state.registry.get(&request.name, version)?;
    let m = pool.metadata();
    let tensors = |specs: &[TensorSpec]| {
        specs
            .iter()
            .map(|s| TensorMetadata {
                name: s.name.clone(),
                datatype: s.datatype.as_str().into(),
                shape: m.full_shape(s),
            })
            .collect()
    };
    Ok(ModelMetadataResponse {
        name: m.name.clone(),
        versions: state
            .registry
            .versions(&request.name)
            .iter()
            .map(u64::to_string)
            .collect(),
        platform: m.platform.clone(),
        inputs: tensors(&m.inputs),
        outputs: tensors(&m.outputs),
    })
}

/// The loaded model's configuration in Triton's form: its tensors as the bridge reports
/// them, the rest from its `config.toml` (as the load request's config changed it).
pub(super) async fn config(
    state: &AppState,
    request: &ModelConfigRequest,
) -> Result<ModelConfigResponse> {
    let version = convert::version(&request.version)?;
    let pool = state.registry.get(&request.name, version)?;
    let metadata = pool.metadata().clone();
    let instances = pool.instances();
    let root = state.registry.model_path(&request.name);
    let v = metadata.version;
    let loaded_with = state.registry.config_override(&request.name);
    let dir = super::blocking(&request.name, move || {
        ModelDir::open_with(&root, Some(v), loaded_with.as_ref())
    })
    .await?;
    Ok(ModelConfigResponse {
        config: Some(model_config(&metadata, &dir, instances)),
    })
}

fn model_config(m: &ModelMetadata, dir: &ModelDir, instances: usize) -> proto::ModelConfig {
    let c = &dir.config;
    let input = m
        .inputs
        .iter()
        .map(|s| ModelInput {
            name: s.name.clone(),
            data_type: data_type(s.datatype) as i32,
            dims: s.dims.clone(),
            ..Default::default()
        })
        .collect();
    let output = m
        .outputs
        .iter()
        .map(|s| ModelOutput {
            name: s.name.clone(),
            data_type: data_type(s.datatype) as i32,
            dims: s.dims.clone(),
            label_filename: c
                .labels_file(&s.name)
                .map(|f| f.display().to_string())
                .unwrap_or_default(),
            ..Default::default()
        })
        .collect();
    let (kind, gpus) = match c.device {
        Device::Cpu => (Kind::Cpu, vec![]),
        Device::Cuda(i) => (Kind::Gpu, vec![i32::try_from(i).unwrap_or(i32::MAX)]),
    };
    let instance_group = vec![ModelInstanceGroup {
        name: format!("{}_0", m.name),
        count: i32::try_from(instances).unwrap_or(i32::MAX),
        gpus,
        kind: kind as i32,
        ..Default::default()
    }];
    let default_model_filename = default_model_filename(dir);
    let scheduling_choice = c.batching.as_ref().map(|b| {
        SchedulingChoice::DynamicBatching(ModelDynamicBatching {
            preferred_batch_size: b
                .preferred_batch_sizes
                .iter()
                .map(|&p| i32::try_from(p).unwrap_or(i32::MAX))
                .collect(),
            max_queue_delay_microseconds: b.max_queue_delay_us,
            default_queue_policy: Some(ModelQueuePolicy {
                max_queue_size: b.max_queue_size,
                ..Default::default()
            }),
            ..Default::default()
        })
    });
    let parameters = c
        .parameters
        .iter()
        .map(|(key, value)| {
            let string_value = value
                .as_str()
                .map_or_else(|| value.to_string(), str::to_string);
            (key.clone(), ModelParameter { string_value })
        })
        .collect();
    proto::ModelConfig {
        name: m.name.clone(),
        platform: m.platform.clone(),
        version_policy: Some(version_policy(&c.version_policy)),
        backend: c.backend.as_str().into(),
        max_batch_size: i32::try_from(m.max_batch_size).unwrap_or(i32::MAX),
        input,
        output,
        instance_group,
        default_model_filename,
        scheduling_choice,
        parameters,
        ..Default::default()
    }
}

fn version_policy(policy: &VersionPolicy) -> proto::ModelVersionPolicy {
    use proto::model_version_policy::{All, Latest, PolicyChoice, Specific};
    let choice = match policy {
        VersionPolicy::Latest(n) => PolicyChoice::Latest(Latest { num_versions: *n }),
        VersionPolicy::All => PolicyChoice::All(All {}),
        VersionPolicy::Specific(versions) => PolicyChoice::Specific(Specific {
            versions: versions
                .iter()
                .map(|&v| i64::try_from(v).unwrap_or(i64::MAX))
                .collect(),
        }),
    };
    proto::ModelVersionPolicy {
        policy_choice: Some(choice),
    }
}

/// Triton's model-config enum for a datatype (`BYTES` is `TYPE_STRING` there).
fn data_type(d: DataType) -> proto::DataType {
    use proto::DataType as P;
    match d {
        DataType::Bool => P::TypeBool,
        DataType::Uint8 => P::TypeUint8,
        DataType::Uint16 => P::TypeUint16,
        DataType::Uint32 => P::TypeUint32,
        DataType::Uint64 => P::TypeUint64,
        DataType::Int8 => P::TypeInt8,
        DataType::Int16 => P::TypeInt16,
        DataType::Int32 => P::TypeInt32,
        DataType::Int64 => P::TypeInt64,
        DataType::Fp16 => P::TypeFp16,
        DataType::Fp32 => P::TypeFp32,
        DataType::Fp64 => P::TypeFp64,
        DataType::Bf16 => P::TypeBf16,
        DataType::Bytes => P::TypeString,
    }
}

/// The file the model's bridge loads (Triton's `default_model_filename`); empty for a
/// directory form. One answer for HTTP and gRPC.
pub(crate) fn default_model_filename(dir: &ModelDir) -> String {
    match dir.form_for(dir.config.backend) {
        Ok(ModelForm::Directory(_)) | Err(_) => String::new(),
        Ok(form) => form
            .path()
            .file_name()
            .map(|f| f.to_string_lossy().into_owned())
            .unwrap_or_default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_datatype_has_its_triton_enum() {
        let names: Vec<_> = DataType::ALL
            .iter()
            .map(|&d| data_type(d).as_str_name())
            .collect();
        assert_eq!(
            names,
            [
                "TYPE_BOOL",
                "TYPE_UINT8",
                "TYPE_UINT16",
                "TYPE_UINT32",
                "TYPE_UINT64",
                "TYPE_INT8",
                "TYPE_INT16",
                "TYPE_INT32",
                "TYPE_INT64",
                "TYPE_FP16",
                "TYPE_FP32",
                "TYPE_FP64",
                "TYPE_BF16",
                "TYPE_STRING",
            ]
        );
    }

    #[test]
    fn config_comes_from_metadata_and_config_toml() {
        let repo = tempfile::tempdir().unwrap();
        let model = repo.path().join("m");
        std::fs::create_dir_all(model.join("2")).unwrap();
        std::fs::write(model.join("2/model.onnx"), b"").unwrap();
        std::fs::write(
            model.join("config.toml"),
            "backend = \"onnx\"\nmax_batch_size = 8\ninstances = 3\n\
             [batching]\nmax_queue_delay_us = 250\npreferred_batch_sizes = [4, 8]\n\
             [parameters]\nmode = \"fast\"\nscale = 2\n",
        )
        .unwrap();
        let dir = ModelDir::open(&model, None).unwrap();
        let m = ModelMetadata {
            name: "m".into(),
            version: 2,
            platform: "onnx".into(),
            max_batch_size: 8,
            inputs: vec![TensorSpec {
                name: "X".into(),
                datatype: DataType::Fp32,
                dims: vec![16],
            }],
            outputs: vec![TensorSpec {
                name: "Y".into(),
                datatype: DataType::Bytes,
                dims: vec![-1],
            }],
        };
        let c = model_config(&m, &dir, 3);
        assert_eq!((c.name.as_str(), c.backend.as_str()), ("m", "onnx"));
        assert_eq!(c.max_batch_size, 8);
        assert_eq!(c.input[0].dims, vec![16]);
        assert_eq!(c.input[0].data_type, proto::DataType::TypeFp32 as i32);
        assert_eq!(c.output[0].data_type, proto::DataType::TypeString as i32);
        assert_eq!(c.instance_group[0].count, 3);
        assert_eq!(c.instance_group[0].kind, Kind::Cpu as i32);
        assert_eq!(c.default_model_filename, "model.onnx");
        let Some(SchedulingChoice::DynamicBatching(b)) = c.scheduling_choice else {
            panic!("dynamic batching is on")
        };
        assert_eq!(b.preferred_batch_size, vec![4, 8]);
        assert_eq!(b.max_queue_delay_microseconds, 250);
        assert_eq!(c.parameters["mode"].string_value, "fast");
        assert_eq!(c.parameters["scale"].string_value, "2");
    }
}
