//! A team's own Rust service with a PyTorch model inside it: `POST /predict`.
//!
//! ```text
//! python examples/digits/train.py examples/digits/models      # once
//! cargo run --release -p torchbridge --example rust-service -- examples/digits/models/digits
//! curl -s localhost:3000/predict -H 'content-type: application/json' \
//!      -d '{"pixels": [0,0,5,13,9,1,0,0, 0,0,13,15,10,15,5,0, 0,3,15,2,0,11,8,0, 0,4,12,0,0,8,8,0,
//!                      0,5,8,0,0,9,8,0, 0,4,11,0,1,12,7,0, 0,2,14,5,10,12,0,0, 0,0,6,13,10,0,0,0]}'
//! ```
//!
//! The model runs in this process through the bridge its config.toml names; torchbridge
//! owns the model's threads, so the async handlers only await the answer.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use axum::{Json, Router};
use serde_json::{Value, json};
use torchbridge::{Model, Tensor};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let path = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "examples/digits/models/digits".into());
    let model = Arc::new(Model::load(&path)?);
    println!(
        "{} loaded through the {} bridge",
        model.metadata().name,
        model.bridge()
    );
    let app = Router::new()
        .route("/predict", post(predict))
        .with_state(model);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
    println!("listening on http://{}", listener.local_addr()?);
    axum::serve(listener, app).await?;
    Ok(())
}

/// `{"pixels": [64 numbers, 0–16 as in sklearn's digits]}` → `{"digit": d, "logits": [...]}`.
async fn predict(
    State(model): State<Arc<Model>>,
    Json(body): Json<Value>,
) -> Result<Json<Value>, (StatusCode, String)> {
    let bad = |message: String| (StatusCode::BAD_REQUEST, message);
    let pixels: Vec<f32> = body["pixels"]
        .as_array()
        .ok_or_else(|| bad("expected {\"pixels\": [64 numbers]}".into()))?
        .iter()
        .map(|v| v.as_f64().map(|p| p as f32 / 16.0))
        .collect::<Option<_>>()
        .ok_or_else(|| bad("pixels must be numbers".into()))?;
    let image = Tensor::from_slice("INPUT0", vec![1, pixels.len() as i64], &pixels)
        .map_err(|e| bad(e.to_string()))?;
    let outputs = model.infer_async(vec![image]).await.map_err(|e| match e {
        torchbridge::Error::InvalidInput(message) => bad(message),
        other => (StatusCode::INTERNAL_SERVER_ERROR, other.to_string()),
    })?;
    let logits = outputs[0]
        .to_vec::<f32>()
        .map_err(|e| (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    let digit = (0..logits.len())
        .max_by(|&a, &b| logits[a].total_cmp(&logits[b]))
        .unwrap_or(0);
    Ok(Json(json!({ "digit": digit, "logits": logits })))
}
