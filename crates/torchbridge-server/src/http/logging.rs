//! `GET /v2/logging` and `POST /v2/logging`: Triton's logging extension over HTTP (see
//! [`crate::log_settings`]).

use axum::Json;
use axum::extract::State;
use serde_json::{Map, Value};

use super::error::ApiError;
use super::extract::{Body, json_or_default};
use crate::AppState;
use crate::log_settings::{SettingValue, update};

/// Every log setting.
pub async fn get(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    answer(&state, Vec::new())
}

/// Changes the settings the body names; answers every setting as it now stands.
pub async fn post(
    State(state): State<AppState>,
    Body(body): Body,
) -> Result<Json<Value>, ApiError> {
    let request: Map<String, Value> = json_or_default(&body)?;
    let changes = request
        .into_iter()
        .map(|(key, value)| {
            let value = match value {
                Value::Bool(b) => SettingValue::Bool(b),
                Value::String(s) => SettingValue::Text(s),
                Value::Number(n) => match n.as_u64().and_then(|n| u32::try_from(n).ok()) {
                    Some(n) => SettingValue::Uint(n),
                    None => {
                        return Err(ApiError::bad_request(format!(
                            "log setting `{key}` must be a whole number in 0..=4294967295, got {n}"
                        )));
                    }
                },
                other => {
                    return Err(ApiError::bad_request(format!(
                        "log setting `{key}` must be a boolean, a number or a string, got {other}"
                    )));
                }
            };
            Ok((key, value))
        })
        .collect::<Result<Vec<_>, _>>()?;
    answer(&state, changes)
}

fn answer(state: &AppState, changes: Vec<(String, SettingValue)>) -> Result<Json<Value>, ApiError> {
    let settings = update(state.settings.log.as_deref(), changes)?;
    let object = settings
        .into_iter()
        .map(|(key, value)| {
            let value = match value {
                SettingValue::Bool(b) => Value::Bool(b),
                SettingValue::Uint(n) => Value::from(n),
                SettingValue::Text(t) => Value::String(t),
            };
            (key.to_string(), value)
        })
        .collect();
    Ok(Json(Value::Object(object)))
}
