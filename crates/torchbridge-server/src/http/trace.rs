//! `GET`/`POST /v2[/models/{model}]/trace/setting`: Triton's trace extension over HTTP
//! (see [`crate::trace`]). A value is a string, a number or a list of strings; `null`
//! clears a setting; a model posted no settings follows the server's again.

use axum::Json;
use axum::extract::{Path, State};
use serde_json::{Map, Value};

use super::error::ApiError;
use super::extract::{Body, json_or_default};
use crate::AppState;
use crate::trace::{Change, TraceSettings};

/// The server's settings.
pub async fn get(State(state): State<AppState>) -> Json<Value> {
    answer(state.tracer.settings(None))
}

/// Changes the server's settings the body names; answers them all.
pub async fn post(
    State(state): State<AppState>,
    Body(body): Body,
) -> Result<Json<Value>, ApiError> {
    let changes = changes(&body)?;
    Ok(answer(state.tracer.update(None, changes)?))
}

/// One model's settings.
pub async fn get_model(
    State(state): State<AppState>,
    Path(model): Path<String>,
) -> Result<Json<Value>, ApiError> {
    known_model(&state, &model)?;
    Ok(answer(state.tracer.settings(Some(&model))))
}

/// Changes one model's settings.
pub async fn post_model(
    State(state): State<AppState>,
    Path(model): Path<String>,
    Body(body): Body,
) -> Result<Json<Value>, ApiError> {
    known_model(&state, &model)?;
    let changes = changes(&body)?;
    Ok(answer(state.tracer.update(Some(&model), changes)?))
}

/// A model's settings can be read and set while it is in the repository, loaded or not.
pub(crate) fn known_model(state: &AppState, model: &str) -> torchbridge_core::Result<()> {
    match state.registry.index().iter().any(|e| e.name == model) {
        true => Ok(()),
        false => Err(torchbridge_core::Error::ModelNotFound(model.to_string())),
    }
}

fn changes(body: &[u8]) -> Result<Vec<Change>, ApiError> {
    let request: Map<String, Value> = json_or_default(body)?;
    request
        .into_iter()
        .map(|(key, value)| {
            let values = match value {
                Value::Null => None,
                Value::String(s) => Some(vec![s]),
                Value::Number(n) => Some(vec![n.to_string()]),
                Value::Array(items) => Some(
                    items
                        .into_iter()
                        .map(|item| match item {
                            Value::String(s) => Ok(s),
                            other => Err(ApiError::bad_request(format!(
                                "trace setting `{key}` must list strings, got {other}"
                            ))),
                        })
                        .collect::<Result<_, _>>()?,
                ),
                other => {
                    return Err(ApiError::bad_request(format!(
                        "trace setting `{key}` must be a string, a number, a list of \
                         strings or null, got {other}"
                    )));
                }
            };
            Ok((key, values))
        })
        .collect()
}

/// Single values as strings, `trace_level` as a list, as Triton answers.
fn answer(settings: TraceSettings) -> Json<Value> {
    let object = settings
        .answer()
        .into_iter()
        .map(|(key, mut values)| {
            let value = match key {
                "trace_level" => Value::from(values),
                _ => Value::String(values.remove(0)),
            };
            (key.to_string(), value)
        })
        .collect();
    Json(Value::Object(object))
}
