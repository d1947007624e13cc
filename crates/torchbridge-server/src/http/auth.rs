//! The bearer-token check in front of every HTTP route (see `crate::auth`).

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::error::ApiError;
use crate::Auth;
use crate::auth::{OPEN_HTTP_PATHS, Refusal};

/// Runs the request when it carries a valid token (or is a health check left open);
/// otherwise answers 401 with `WWW-Authenticate: Bearer`, before the body is read.
pub async fn require_token(
    State(auth): State<Arc<Auth>>,
    request: Request,
    next: Next,
) -> Response {
    if auth.allows_health() && OPEN_HTTP_PATHS.contains(&request.uri().path()) {
        return next.run(request).await;
    }
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .map(HeaderValue::as_bytes);
    match auth.check(presented) {
        Ok(()) => next.run(request).await,
        Err(refusal) => {
            tracing::debug!(
                path = request.uri().path(),
                "refused: {}",
                refusal.message()
            );
            let challenge = match refusal {
                Refusal::WrongToken => r#"Bearer error="invalid_token""#,
                Refusal::Missing | Refusal::NotBearer => "Bearer",
            };
            let mut response =
                ApiError::new(StatusCode::UNAUTHORIZED, refusal.message()).into_response();
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static(challenge),
            );
            response
        }
    }
}
