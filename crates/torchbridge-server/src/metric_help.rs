//! The `# HELP` text of every metric torchbridge exports, described to the recorder once
//! at startup (the metrics themselves are registered where they are counted).

use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};

/// Describes every metric to the installed recorder; call after installing it.
pub fn describe_metrics() {
    describe_counter!(
        "torchbridge_http_requests_total",
        "HTTP requests by matched route, method and status"
    );
    describe_histogram!(
        "torchbridge_http_request_duration_seconds",
        Unit::Seconds,
        "HTTP request time, from its head to its answer"
    );
    describe_counter!(
        "torchbridge_inference_requests_total",
        "Inference requests by model, version, outcome and protocol"
    );
    describe_histogram!(
        "torchbridge_inference_duration_seconds",
        Unit::Seconds,
        "Inference request time inside the server, HTTP and gRPC"
    );
    describe_histogram!(
        "torchbridge_queue_duration_seconds",
        Unit::Seconds,
        "Time a request waited before its model call started"
    );
    describe_histogram!(
        "torchbridge_compute_duration_seconds",
        Unit::Seconds,
        "Time of each model call (a batch), bridge crossings included"
    );
    describe_histogram!(
        "torchbridge_bridge_crossing_seconds",
        Unit::Seconds,
        "Time converting tensors into (in) and out of (out) the engine"
    );
    describe_histogram!(
        "torchbridge_batch_size",
        Unit::Count,
        "Rows in each model call"
    );
    describe_gauge!(
        "torchbridge_inflight_requests",
        "Requests admitted and not yet answered"
    );
    describe_gauge!(
        "torchbridge_queue_depth",
        "Requests waiting in a batching model's queue"
    );
    describe_gauge!(
        "torchbridge_instances_stuck",
        "Instances whose call has run past its requests' deadline"
    );
}
