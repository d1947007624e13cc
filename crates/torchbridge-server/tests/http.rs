//! The HTTP router without a socket: routes that need no loaded model, error bodies,
//! body limits and compression. Inference against real models is covered end to end
//! (tests/e2e/test_http.py) and the codecs by the crate's unit tests.

use std::io::Write;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use flate2::Compression;
use flate2::write::{GzEncoder, ZlibEncoder};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use torchbridge_core::{Error, Loader, ModelDir, Registry};
use torchbridge_server::{AppState, Auth, Limits, ServerSettings};
use tower::ServiceExt;

/// A loader that refuses every model, as a broken model file would: no model is ever
/// served, so these tests need no bridge.
fn refusing_loader() -> Loader {
    Arc::new(|dir: &ModelDir| {
        Err(Error::Load {
            model: dir.name.clone(),
            bridge: "onnx",
            message: "model.onnx is not a valid ONNX file".into(),
        })
    })
}

/// A repository holding one model, `broken`, that fails to load.
fn app_with(max_body_bytes: usize) -> (tempfile::TempDir, Router) {
    let repo = tempfile::tempdir().unwrap();
    let model = repo.path().join("broken");
    std::fs::create_dir_all(model.join("1")).unwrap();
    std::fs::write(model.join("config.toml"), "backend = \"onnx\"\n").unwrap();
    let registry = Arc::new(Registry::new(repo.path(), refusing_loader()));
    assert_eq!(registry.load_all().unwrap(), 0);
    let settings = ServerSettings {
        limits: Limits {
            max_body_bytes,
            max_inflated_bytes: max_body_bytes,
            ..Limits::default()
        },
        ..ServerSettings::default()
    };
    let app = torchbridge_server::http::app(AppState::new(registry, settings));
    (repo, app)
}

fn app() -> (tempfile::TempDir, Router) {
    app_with(1 << 20)
}

struct Reply {
    status: StatusCode,
    json: Value,
}

async fn send(app: &Router, request: Request<Body>) -> Reply {
    let response = app.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    let json = if body.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&body)
            .unwrap_or_else(|e| panic!("{status}: body is not JSON ({e}): {body:?}"))
    };
    Reply { status, json }
}

async fn get(app: &Router, uri: &str) -> Reply {
    send(app, Request::get(uri).body(Body::empty()).unwrap()).await
}

async fn post(app: &Router, uri: &str, body: impl Into<Body>) -> Reply {
    send(app, Request::post(uri).body(body.into()).unwrap()).await
}

fn error_of(reply: &Reply) -> &str {
    reply.json["error"]
        .as_str()
        .unwrap_or_else(|| panic!("no error message in {}", reply.json))
}

#[tokio::test]
async fn health_and_server_metadata() {
    let (_repo, app) = app();
    let live = get(&app, "/v2/health/live").await;
    assert_eq!(
        (live.status, live.json.clone()),
        (StatusCode::OK, json!({"live": true}))
    );
    // `broken` failed to load: as in Triton (strict readiness, the default), not ready.
    let ready = get(&app, "/v2/health/ready").await;
    assert_eq!(
        (ready.status, ready.json.clone()),
        (StatusCode::SERVICE_UNAVAILABLE, json!({"ready": false}))
    );
    let meta = get(&app, "/v2").await;
    assert_eq!(meta.json["name"], "torchbridge");
    let extensions = meta.json["extensions"].as_array().unwrap();
    for ext in [
        "binary_tensor_data",
        "statistics",
        "model_configuration",
        "model_repository",
    ] {
        assert!(extensions.contains(&json!(ext)), "{ext} missing");
    }
}

#[tokio::test]
async fn unknown_models_are_404_everywhere() {
    let (_repo, app) = app();
    for uri in [
        "/v2/models/nope",
        "/v2/models/nope/versions/2",
        "/v2/models/nope/ready",
        "/v2/models/nope/config",
        "/v2/models/nope/stats",
    ] {
        let reply = get(&app, uri).await;
        assert_eq!(reply.status, StatusCode::NOT_FOUND, "{uri}");
        assert_eq!(error_of(&reply), "unknown model `nope`", "{uri}");
    }
    let reply = post(&app, "/v2/models/nope/infer", r#"{"inputs": []}"#).await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND);
    let reply = post(&app, "/v2/repository/models/nope/load", "").await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND);
    let reply = post(&app, "/v2/repository/models/nope/unload", "").await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn a_model_that_failed_to_load_reports_why() {
    let (_repo, app) = app();
    let reply = get(&app, "/v2/models/broken/ready").await;
    assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(
        error_of(&reply).contains("not a valid ONNX file"),
        "{}",
        reply.json
    );
    let reply = post(&app, "/v2/models/broken/infer", r#"{"inputs": []}"#).await;
    assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE);

    let index = post(&app, "/v2/repository/index", "").await;
    assert_eq!(index.status, StatusCode::OK);
    let entry = &index.json[0];
    assert_eq!(
        (entry["name"].as_str(), entry["state"].as_str()),
        (Some("broken"), Some("UNAVAILABLE"))
    );
    assert!(
        entry["reason"]
            .as_str()
            .unwrap()
            .contains("not a valid ONNX file")
    );
    let ready_only = post(&app, "/v2/repository/index", r#"{"ready": true}"#).await;
    assert_eq!(ready_only.json, json!([]));

    let load = post(&app, "/v2/repository/models/broken/load", "{}").await;
    assert_eq!(load.status, StatusCode::BAD_REQUEST);
    assert!(
        error_of(&load).contains("failed to load through the onnx bridge"),
        "{}",
        load.json
    );
    let load = post(
        &app,
        "/v2/repository/models/broken/load",
        r#"{"parameters": {"config": "{\"instance_group\": 3}"}}"#,
    )
    .await;
    assert_eq!(load.status, StatusCode::BAD_REQUEST);
    assert!(
        error_of(&load).contains("`instance_group`: must be a list, got 3"),
        "{}",
        load.json
    );
    let unload = post(
        &app,
        "/v2/repository/models/broken/unload",
        r#"{"parameters": {"unload_dependents": false}}"#,
    )
    .await;
    assert_eq!(unload.status, StatusCode::OK);

    let stats = get(&app, "/v2/models/stats").await;
    assert_eq!(stats.json, json!({"model_stats": []}));
}

#[tokio::test]
async fn bad_requests_get_the_protocol_error_body() {
    let (_repo, app) = app();
    let reply = post(&app, "/v2/repository/index", "{not json").await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert!(
        error_of(&reply).starts_with("malformed JSON"),
        "{}",
        reply.json
    );
    // serde reads a struct from a JSON array too; the protocol's bodies are objects.
    for path in [
        "/v2/repository/index",
        "/v2/repository/models/broken/load",
        "/v2/repository/models/broken/unload",
        "/v2/logging",
    ] {
        let reply = post(&app, path, "[]").await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{path}");
        assert_eq!(
            error_of(&reply),
            "the request body must be a JSON object, got an array",
            "{path}"
        );
    }
    let reply = get(&app, "/v2/models/broken/versions/latest").await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert!(error_of(&reply).contains("`latest`"));
    let reply = get(&app, "/v2/no/such/route").await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND);
    assert!(error_of(&reply).contains("no route for GET /v2/no/such/route"));
    let reply = send(
        &app,
        Request::builder()
            .method(Method::DELETE)
            .uri("/v2/health/live")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(reply.status, StatusCode::METHOD_NOT_ALLOWED);
    error_of(&reply);
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = GzEncoder::new(Vec::new(), Compression::default());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

fn compressed(uri: &str, encoding: &str, body: Vec<u8>) -> Request<Body> {
    Request::post(uri)
        .header(header::CONTENT_ENCODING, encoding)
        .body(Body::from(body))
        .unwrap()
}

#[tokio::test]
async fn compressed_request_bodies_are_inflated() {
    let (_repo, app) = app();
    let body = br#"{"ready": true}"#;
    let reply = send(&app, compressed("/v2/repository/index", "gzip", gzip(body))).await;
    assert_eq!((reply.status, reply.json), (StatusCode::OK, json!([])));
    let mut zlib = ZlibEncoder::new(Vec::new(), Compression::default());
    zlib.write_all(body).unwrap();
    let reply = send(
        &app,
        compressed("/v2/repository/index", "deflate", zlib.finish().unwrap()),
    )
    .await;
    assert_eq!((reply.status, reply.json), (StatusCode::OK, json!([])));
    let reply = send(
        &app,
        compressed("/v2/repository/index", "gzip", b"garbage".to_vec()),
    )
    .await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    let reply = send(
        &app,
        compressed("/v2/repository/index", "br", body.to_vec()),
    )
    .await;
    assert_eq!(reply.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    error_of(&reply);
}

#[tokio::test]
async fn bodies_over_the_limit_are_413() {
    let (_repo, app) = app_with(16 << 10);
    let reply = post(&app, "/v2/models/broken/infer", vec![b' '; 20_000]).await;
    assert_eq!(reply.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(
        error_of(&reply),
        "the request body is over the limit of 16384 bytes (--max-body-bytes)"
    );
    // 8 MiB of zeros gzip to about 8 KiB: under the limit on the wire, refused once
    // inflating passes it.
    let bomb = gzip(&vec![0u8; 8 << 20]);
    assert!(bomb.len() < 16 << 10, "{}", bomb.len());
    let reply = send(&app, compressed("/v2/models/broken/infer", "gzip", bomb)).await;
    assert_eq!(reply.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(error_of(&reply).contains("inflates past the limit of 16384 bytes"));
}

/// The repository of [`app_with`], served with `auth`.
#[tokio::test]
async fn without_strict_readiness_a_failed_model_does_not_hold_the_server_back() {
    let repo = tempfile::tempdir().unwrap();
    let model = repo.path().join("broken");
    std::fs::create_dir_all(model.join("1")).unwrap();
    std::fs::write(model.join("config.toml"), "backend = \"onnx\"\n").unwrap();
    let registry = Arc::new(Registry::new(repo.path(), refusing_loader()));
    registry.load_all().unwrap();
    let settings = ServerSettings {
        strict_readiness: false,
        ..ServerSettings::default()
    };
    let state = AppState::new(registry.clone(), settings);
    let app = torchbridge_server::http::app(state.clone());
    assert_eq!(get(&app, "/v2/health/ready").await.status, StatusCode::OK);
    // Once started, a model loading later (a poll found it) leaves the server ready: every
    // replica polling one repository would otherwise leave its load balancer at once.
    registry.mark_loading(&["later".to_string()]);
    assert_eq!(
        get(&app, "/v2/health/ready").await.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "loading at startup"
    );
    state.started();
    assert_eq!(get(&app, "/v2/health/ready").await.status, StatusCode::OK);
    registry.remove("later");
    // An unloaded model does not count against readiness, strict or not.
    registry.unload("broken").unwrap();
    let strict = torchbridge_server::http::app(AppState::new(registry, ServerSettings::default()));
    assert_eq!(
        get(&strict, "/v2/health/ready").await.status,
        StatusCode::OK
    );
    // A stop is coming: not ready, whatever the models.
    state.drain();
    let ready = get(&app, "/v2/health/ready").await;
    assert_eq!(
        (ready.status, ready.json),
        (StatusCode::SERVICE_UNAVAILABLE, json!({"ready": false}))
    );
}

fn app_with_auth(auth: Auth) -> (tempfile::TempDir, Router) {
    let repo = tempfile::tempdir().unwrap();
    let registry = Arc::new(Registry::new(repo.path(), refusing_loader()));
    let settings = ServerSettings {
        auth: Some(Arc::new(auth)),
        ..ServerSettings::default()
    };
    let app = torchbridge_server::http::app(AppState::new(registry, settings));
    (repo, app)
}

async fn get_with(app: &Router, uri: &str, authorization: Option<&str>) -> Reply {
    let mut request = Request::get(uri);
    if let Some(value) = authorization {
        request = request.header(header::AUTHORIZATION, value);
    }
    send(app, request.body(Body::empty()).unwrap()).await
}

#[tokio::test]
async fn tokens_guard_every_route_even_unknown_ones() {
    let auth = Auth::new(vec!["s3cret".into()], false, "test").unwrap();
    let (_repo, app) = app_with_auth(auth);
    for uri in [
        "/v2/health/live",
        "/v2",
        "/v2/models/nope",
        "/no/such/route",
    ] {
        let reply = get_with(&app, uri, None).await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{uri}");
        assert!(
            error_of(&reply).starts_with("authentication required"),
            "{uri}"
        );
        let reply = get_with(&app, uri, Some("Bearer wrong")).await;
        assert_eq!(error_of(&reply), "the bearer token is not valid", "{uri}");
    }
    let reply = get_with(&app, "/v2/health/live", Some("Bearer s3cret")).await;
    assert_eq!(reply.status, StatusCode::OK);
    let reply = get_with(&app, "/v2/models/nope", Some("bearer s3cret")).await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND);
    let response = app
        .clone()
        .oneshot(Request::get("/v2").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(response.headers()[header::WWW_AUTHENTICATE], "Bearer");
}

#[tokio::test]
async fn health_may_be_left_open() {
    let auth = Auth::new(vec!["s3cret".into()], true, "test").unwrap();
    let (_repo, app) = app_with_auth(auth);
    for uri in ["/v2/health/live", "/v2/health/ready"] {
        assert_eq!(
            get_with(&app, uri, None).await.status,
            StatusCode::OK,
            "{uri}"
        );
    }
    let reply = get_with(&app, "/v2", None).await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
}
