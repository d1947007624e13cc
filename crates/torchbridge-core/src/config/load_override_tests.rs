use super::*;

const BASE: &str = r#"
backend = "onnx"
max_batch_size = 8
threads = 2
[[input]]
name = "INPUT0"
datatype = "FP32"
dims = [4]
[[output]]
name = "OUTPUT0"
datatype = "FP32"
dims = [3]
[batching]
max_queue_delay_us = 100
preferred_batch_sizes = [4]
"#;

fn base() -> ModelConfig {
    ModelConfig::from_toml(BASE).unwrap()
}

fn applied(json: &str) -> Result<ModelConfig, String> {
    ConfigOverride::parse(json)?.apply(&base(), "net")
}

/// What the model-config endpoint answers for BASE, as a client would read it back.
const SHOWN: &str = r#"{
  "name": "net", "platform": "onnxruntime_onnx", "backend": "onnx",
  "version_policy": {"latest": {"num_versions": 1}}, "max_batch_size": 8,
  "input": [{"name": "INPUT0", "data_type": "TYPE_FP32", "format": "FORMAT_NONE", "dims": [4],
             "is_shape_tensor": false, "allow_ragged_batch": false, "optional": false}],
  "output": [{"name": "OUTPUT0", "data_type": "TYPE_FP32", "dims": [3], "label_filename": "",
              "is_shape_tensor": false}],
  "instance_group": [{"name": "net_0", "kind": "KIND_CPU", "count": 3, "gpus": []}],
  "default_model_filename": "",
  "dynamic_batching": {"preferred_batch_size": [4], "max_queue_delay_microseconds": 100,
                       "preserve_ordering": false, "default_queue_policy": {"max_queue_size": 1024}},
  "parameters": {}
}"#;

#[test]
fn the_config_a_server_shows_loads_back_with_the_edit_made_to_it() {
    let c = applied(SHOWN).unwrap();
    let b = base();
    assert_eq!(c.instances, 3);
    assert_eq!((c.backend, c.max_batch_size, c.threads), (b.backend, 8, 2));
    assert_eq!((c.inputs, c.outputs), (b.inputs, b.outputs));
    assert_eq!(c.batching, b.batching);
    assert_eq!(c.version_policy, VersionPolicy::Latest(1));
}

#[test]
fn fields_left_out_keep_what_config_toml_says() {
    let c =
        applied(r#"{"max_batch_size": 16, "dynamic_batching": {"preferred_batch_size": [16]}}"#)
            .unwrap();
    assert_eq!(c.max_batch_size, 16);
    let batching = c.batching.unwrap();
    assert_eq!(batching.preferred_batch_sizes, vec![16]);
    assert_eq!(batching.max_queue_delay_us, 100, "kept from [batching]");
    assert_eq!(c.inputs, base().inputs);
    assert_eq!(c.instances, 1);
}

#[test]
fn batching_turns_on_with_defaults_and_off_with_null() {
    let c = applied(r#"{"dynamic_batching": null}"#).unwrap();
    assert!(c.batching.is_none());
    let unbatched = ModelConfig::from_toml("backend = \"onnx\"\nmax_batch_size = 4").unwrap();
    let o = ConfigOverride::parse(
        r#"{"dynamic_batching": {"default_queue_policy": {"max_queue_size": 0}}}"#,
    )
    .unwrap();
    let c = o.apply(&unbatched, "net").unwrap();
    assert_eq!(
        c.batching,
        Some(BatchingConfig::default()),
        "Triton's 0 (no limit) keeps a bound"
    );
}

#[test]
fn instance_groups_give_the_count_and_the_device() {
    let c = applied(
        r#"{"instance_group": [{"count": 2, "kind": "KIND_GPU", "gpus": [1]}, {"count": 1}]}"#,
    )
    .unwrap();
    assert_eq!((c.instances, c.device), (3, Device::Cuda(1)));
    let e =
        applied(r#"{"instance_group": [{"kind": "KIND_GPU"}, {"kind": "KIND_CPU"}]}"#).unwrap_err();
    assert!(
        e.contains("`instance_group`") && e.contains("one device"),
        "{e}"
    );
}

#[test]
fn versions_backend_and_tensors_map_from_triton_names() {
    let c = applied(
        r#"{"version_policy": {"specific": {"versions": [1, 3]}}, "backend": "pytorch",
            "output": [{"name": "P", "data_type": "TYPE_STRING", "dims": [-1], "label_filename": "l.txt"}],
            "parameters": {"scale": {"string_value": "2"}}}"#,
    )
    .unwrap();
    assert_eq!(c.version_policy, VersionPolicy::Specific(vec![1, 3]));
    assert_eq!(c.backend, BackendKind::Torchscript);
    assert_eq!(c.outputs[0].datatype, DataType::Bytes);
    assert_eq!(c.outputs[0].dims, vec![-1]);
    assert_eq!(c.labels_file("P"), Some(std::path::Path::new("l.txt")));
    assert_eq!(c.parameters["scale"].as_str(), Some("2"));
}

#[test]
fn what_torchbridge_cannot_do_is_refused_by_name() {
    for (json, named) in [
        (
            r#"{"sequence_batching": {"max_sequence_idle_microseconds": 5}}"#,
            "`sequence_batching`",
        ),
        (r#"{"name": "other"}"#, "the model loading is `net`"),
        (
            r#"{"input": [{"name": "X", "data_type": "TYPE_FP32", "dims": [1], "is_shape_tensor": true}]}"#,
            "`is_shape_tensor`",
        ),
        (
            r#"{"input": [{"name": "X", "data_type": "FP32", "dims": [1]}]}"#,
            "TYPE_",
        ),
        (
            r#"{"input": [{"name": "X", "dims": [1]}]}"#,
            "has no data_type",
        ),
        (r#"{"max_batch_size": -1}"#, "`max_batch_size`"),
        (
            r#"{"backend": "tensorflow"}"#,
            "unknown bridge `tensorflow`",
        ),
        (
            r#"{"dynamic_batching": {"priority_levels": 2}}"#,
            "`priority_levels`",
        ),
        (r#"{"version_policy": {"newest": {}}}"#, "`newest`"),
        (
            r#"{"dynamic_batching": {"default_queue_policy": {"timeout_action": "DELAY"}}}"#,
            "sets `timeout_action` to \"DELAY\"",
        ),
        (
            r#"{"dynamic_batching": {"default_queue_policy": {"default_timeout_microseconds": 100}}}"#,
            "`default_timeout_microseconds`",
        ),
        (
            r#"{"instance_group": [{"kind": "KIND_GPU", "gpus": [0, 1]}]}"#,
            "on one device",
        ),
        (
            r#"{"instance_group": [{"count": 4294967295}, {"count": 2}]}"#,
            "more instances than there can be",
        ),
        // The merged config is checked as config.toml is.
        (r#"{"max_batch_size": 2}"#, "preferred_batch_sizes"),
    ] {
        let e = applied(json).unwrap_err();
        assert!(e.contains(named), "{json}: {e}");
    }
    // Unset fields, as clients send them, ask for nothing.
    applied(r#"{"sequence_batching": {}, "optimization": null, "model_warmup": []}"#).unwrap();
    applied(
        r#"{"dynamic_batching": {"default_queue_policy": {"timeout_action": "REJECT",
        "default_timeout_microseconds": 0, "allow_timeout_override": false}}}"#,
    )
    .unwrap();
}

#[test]
fn with_files_a_config_makes_the_config_toml_it_is_merged_into() {
    let o = ConfigOverride::parse(r#"{"backend": "onnxruntime", "max_batch_size": 4}"#).unwrap();
    let (toml, rest) = o.for_files().unwrap();
    assert_eq!(toml, "backend = \"onnx\"\n");
    let c = rest
        .unwrap()
        .apply(&ModelConfig::from_toml(&toml).unwrap(), "m")
        .unwrap();
    assert_eq!((c.backend, c.max_batch_size), (BackendKind::Onnx, 4));
    let o = ConfigOverride::parse(r#"{"platform": "pytorch_libtorch"}"#).unwrap();
    assert_eq!(o.for_files().unwrap().0, "backend = \"torchscript\"\n");
    let e = ConfigOverride::parse(r#"{"max_batch_size": 4}"#)
        .unwrap()
        .for_files()
        .unwrap_err();
    assert!(e.contains("names no `backend`"), "{e}");
    let whole = ConfigOverride::parse("backend = \"tract\"").unwrap();
    let (toml, rest) = whole.for_files().unwrap();
    assert!(toml == "backend = \"tract\"" && rest.is_none());
    // The client's model, but the server's files: nothing outside the model directory.
    let outside = "backend = \"onnx\"\n[tokenizer]\nfile = \"/dev/zero\"\ninput = \"T\"\n";
    let e = ConfigOverride::parse(outside)
        .unwrap()
        .for_files()
        .unwrap_err();
    assert!(
        e.contains("`tokenizer.file` \"/dev/zero\" must be a path inside"),
        "{e}"
    );
}

#[test]
fn a_text_that_is_not_json_is_a_whole_config_toml() {
    let c = applied("backend = \"tract\"\nmax_batch_size = 2").unwrap();
    assert_eq!(
        (c.backend, c.max_batch_size, c.threads),
        (BackendKind::Tract, 2, 0)
    );
    assert!(c.batching.is_none() && c.inputs.is_empty());
    let e = ConfigOverride::parse("max_batch_size = 2").unwrap_err();
    assert!(
        e.contains("is a config.toml that cannot serve") && e.contains("backend"),
        "{e}"
    );
    let e = ConfigOverride::parse("backend = onnx").unwrap_err();
    assert!(
        e.contains("neither a JSON object") && e.contains("TOML"),
        "{e}"
    );
    let e = ConfigOverride::parse("{\"max_batch_size\": ").unwrap_err();
    assert!(e.contains("not valid JSON"), "{e}");
    assert_eq!(ConfigOverride::parse("{}").unwrap().text(), "{}");
}

#[test]
fn protobufs_json_loads_back_too() {
    // tritonclient's gRPC get_model_config(as_json=True): integers as strings, and
    // MessageToJson's lowerCamelCase names.
    let c = applied(
        r#"{"maxBatchSize": "4", "input": [{"name": "INPUT0", "dataType": "TYPE_FP32",
            "dims": ["4"]}], "dynamic_batching": {"maxQueueDelayMicroseconds": "2000",
            "preferred_batch_size": [2, "4"]}, "parameters": {"myKey": {"stringValue": "7"}}}"#,
    )
    .unwrap();
    assert_eq!(c.max_batch_size, 4);
    assert_eq!(c.inputs[0].dims, [4]);
    let b = c.batching.unwrap();
    assert_eq!(
        (b.max_queue_delay_us, b.preferred_batch_sizes),
        (2000, vec![2, 4])
    );
    assert_eq!(
        c.parameters["myKey"].as_str(),
        Some("7"),
        "names and strings of parameters kept"
    );
}

#[test]
fn a_loads_config_may_not_decide_what_the_operator_trusts() {
    let whole =
        |extra: &str| ConfigOverride::parse(&format!("{extra}\n{BASE}"))?.apply(&base(), "net");
    for (extra, refused) in [
        ("trust_pickle = true", "`trust_pickle` is the operator's"),
        (
            "python_env = \"/tmp/venv\"",
            "`python_env` is the operator's",
        ),
        ("isolation = \"process\"", "`isolation` is the operator's"),
    ] {
        let e = whole(extra).unwrap_err();
        assert!(e.contains(refused), "{extra}: {e}");
    }
    let tokenizer = format!("{BASE}\n[tokenizer]\nfile = \"/dev/zero\"");
    let e = ConfigOverride::parse(&tokenizer)
        .unwrap()
        .apply(&base(), "net");
    assert!(e.unwrap_err().contains("`tokenizer.file`"));
}

#[test]
fn a_shown_config_given_back_keeps_typed_parameters_and_a_tokenizers_inputs() {
    let base = ModelConfig::from_toml(
        "backend = \"onnx\"\nmax_batch_size = 8\n[parameters]\ndelay_ms = 400\nfast = true\n\
         mode = \"a\"\n[tokenizer]\ninput = \"TEXT\"\n",
    )
    .unwrap();
    let shown = r#"{"input": [{"name": "TEXT", "data_type": "TYPE_STRING", "dims": [1]}],
        "parameters": {"delay_ms": {"string_value": "400"}, "fast": {"string_value": "true"},
                       "mode": {"string_value": "a"}}}"#;
    let c = ConfigOverride::parse(shown)
        .unwrap()
        .apply(&base, "net")
        .unwrap();
    assert_eq!(
        c.parameters, base.parameters,
        "400 stays a number, true a boolean"
    );
    assert_eq!(
        c.inputs, base.inputs,
        "the shown text input is not the model's input"
    );
    // Edited, a value keeps its type where it reads as one; other inputs are taken as
    // given.
    let edited = r#"{"input": [{"name": "ids", "data_type": "TYPE_INT64", "dims": [-1]}],
        "parameters": {"delay_ms": {"string_value": "50"}, "fast": {"string_value": "no"},
                       "mode": {"string_value": "7"}}}"#;
    let c = ConfigOverride::parse(edited)
        .unwrap()
        .apply(&base, "net")
        .unwrap();
    assert_eq!(c.parameters["delay_ms"].as_integer(), Some(50));
    assert_eq!(
        c.parameters["fast"].as_str(),
        Some("no"),
        "not a boolean: as sent"
    );
    assert_eq!(
        c.parameters["mode"].as_str(),
        Some("7"),
        "a string in config.toml stays one"
    );
    assert_eq!(c.inputs[0].name, "ids");
}
