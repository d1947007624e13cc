//! `TraceSetting`: Triton's trace extension over gRPC (see [`crate::trace`]). A request
//! with no settings reads them (tritonclient's `get_trace_settings`); a setting sent
//! with no values is cleared.

use torchbridge_core::Result;

use super::proto::trace_setting_response::SettingValue;
use super::proto::{TraceSettingRequest, TraceSettingResponse};
use crate::AppState;
use crate::http::known_model;

pub(super) fn setting(
    state: &AppState,
    request: TraceSettingRequest,
) -> Result<TraceSettingResponse> {
    let model = Some(request.model_name.as_str()).filter(|m| !m.is_empty());
    if let Some(model) = model {
        known_model(state, model)?;
    }
    let settings = match request.settings.is_empty() {
        true => state.tracer.settings(model),
        false => {
            let changes = request
                .settings
                .into_iter()
                .map(|(key, value)| (key, Some(value.value).filter(|v| !v.is_empty())))
                .collect();
            state.tracer.update(model, changes)?
        }
    };
    let settings = settings
        .answer()
        .into_iter()
        .map(|(key, value)| (key.to_string(), SettingValue { value }))
        .collect();
    Ok(TraceSettingResponse { settings })
}
