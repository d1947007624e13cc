//! A tower layer in front of the gRPC service: the bearer-token check (see
//! `crate::auth`), and clear words for tonic's message-size refusals.
//!
//! A refused call never reaches the service: the layer fails with a [`Status`], which
//! tonic's server turns into the response (UNAUTHENTICATED, before the message is read).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::http::{HeaderValue, Request, Response};
use tonic::{Code, Status};
use tower::{Layer, Service};

use crate::Auth;
use crate::auth::OPEN_GRPC_PATHS;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Wraps the gRPC service in `Guard`.
#[derive(Debug, Clone)]
pub struct GuardLayer {
    auth: Option<Arc<Auth>>,
    max_message_bytes: usize,
}

impl GuardLayer {
    pub fn new(auth: Option<Arc<Auth>>, max_message_bytes: usize) -> Self {
        GuardLayer {
            auth,
            max_message_bytes,
        }
    }
}

impl<S> Layer<S> for GuardLayer {
    type Service = Guard<S>;

    fn layer(&self, inner: S) -> Guard<S> {
        Guard {
            inner,
            auth: self.auth.clone(),
            max_message_bytes: self.max_message_bytes,
        }
    }
}

/// See the module docs.
#[derive(Debug, Clone)]
pub struct Guard<S> {
    inner: S,
    auth: Option<Arc<Auth>>,
    max_message_bytes: usize,
}

impl<S, B, R> Service<Request<B>> for Guard<S>
where
    S: Service<Request<B>, Response = Response<R>>,
    S::Error: Into<BoxError>,
    S::Future: Send + 'static,
{
    type Response = Response<R>;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Response<R>, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        if let Some(auth) = &self.auth {
            let open = auth.allows_health() && OPEN_GRPC_PATHS.contains(&request.uri().path());
            let presented = request
                .headers()
                .get("authorization")
                .map(HeaderValue::as_bytes);
            if !open && let Err(refusal) = auth.check(presented) {
                tracing::debug!(
                    path = request.uri().path(),
                    "refused: {}",
                    refusal.message()
                );
                let status = Status::unauthenticated(refusal.message());
                return Box::pin(async move { Err(status.into()) });
            }
        }
        let limit = self.max_message_bytes;
        let answer = self.inner.call(request);
        Box::pin(async move {
            let mut response = answer.await.map_err(Into::into)?;
            explain_size_refusal(&mut response, limit);
            Ok(response)
        })
    }
}

/// tonic refuses a message over the size limit (as sent, or while inflating it) with
/// its own wording; say instead which limit it was and the flag that raises it, with
/// the code gRPC's other implementations use for it, RESOURCE_EXHAUSTED. tonic leaves
/// the status it answered with in the response's extensions.
fn explain_size_refusal<R>(response: &mut Response<R>, limit: usize) {
    let Some(status) = response.extensions().get::<Status>() else {
        return;
    };
    let said = |prefix: &str| status.message().starts_with(prefix);
    let message = match status.code() {
        Code::OutOfRange if said("Error, decoded message length too large") => {
            format!("the request message is over the limit of {limit} bytes (--max-body-bytes)")
        }
        Code::ResourceExhausted if said("Error decompressing: size limit") => format!(
            "the request message inflates past the limit of {limit} bytes (--max-body-bytes)"
        ),
        _ => return,
    };
    let status = Status::resource_exhausted(message);
    let headers = response.headers_mut();
    headers.remove("grpc-message");
    if status.add_header(headers).is_ok() {
        response.extensions_mut().insert(status);
    }
}
