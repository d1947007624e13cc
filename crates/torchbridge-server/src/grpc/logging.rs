//! `LogSettings`: Triton's logging extension over gRPC (see [`crate::log_settings`]). An
//! empty request reads the settings; the answer holds every setting.

use torchbridge_core::{Error, Result};

use super::proto::log_settings_request::setting_value::ParameterChoice as Asked;
use super::proto::log_settings_response::SettingValue as Answered;
use super::proto::log_settings_response::setting_value::ParameterChoice as Answer;
use super::proto::{LogSettingsRequest, LogSettingsResponse};
use crate::AppState;
use crate::log_settings::{SettingValue, update};

pub(super) fn settings(
    state: &AppState,
    request: LogSettingsRequest,
) -> Result<LogSettingsResponse> {
    let changes = request
        .settings
        .into_iter()
        .map(|(key, value)| {
            let value = match value.parameter_choice {
                Some(Asked::BoolParam(b)) => SettingValue::Bool(b),
                Some(Asked::Uint32Param(n)) => SettingValue::Uint(n),
                Some(Asked::StringParam(s)) => SettingValue::Text(s),
                None => {
                    return Err(Error::InvalidInput(format!(
                        "log setting `{key}` has no value"
                    )));
                }
            };
            Ok((key, value))
        })
        .collect::<Result<Vec<_>>>()?;
    let settings = update(state.settings.log.as_deref(), changes)?
        .into_iter()
        .map(|(key, value)| {
            let choice = match value {
                SettingValue::Bool(b) => Answer::BoolParam(b),
                SettingValue::Uint(n) => Answer::Uint32Param(n),
                SettingValue::Text(t) => Answer::StringParam(t),
            };
            let value = Answered {
                parameter_choice: Some(choice),
            };
            (key.to_string(), value)
        })
        .collect();
    Ok(LogSettingsResponse { settings })
}
