//! One worker's connection, sending the run's encoded request and reading the reply:
//! HTTP/1.1 keep-alive (hyper), or for gRPC an HTTP/2 connection (hyper too) carrying
//! the protobuf message framed once, its reply skipped but for the `grpc-status`
//! trailer. A gRPC library would encode and decode every message, and queue each call
//! through a channel task: cycles taken from the server on a small machine. tonic opens
//! the probe's and the metadata calls' channels ([`grpc_connect`]).

use std::sync::Arc;
use std::time::Duration;

use anyhow::anyhow;
use bytes::Bytes;
use http::header::{CONTENT_TYPE, HOST, TE};
use http::{HeaderMap, HeaderValue, Request, Response, Uri};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use hyper::client::conn::http2;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tonic::transport::{Channel, Endpoint};

use super::codec::HttpBody;

/// Why a call failed, as the tables group it, and whether the connection is spoilt.
#[derive(Debug)]
pub struct Failure {
    pub kind: String,
    pub reconnect: bool,
}

/// `cannot connect to ADDR: connection refused`.
pub fn connect_error(address: &str, e: &std::io::Error) -> anyhow::Error {
    let why = match e.kind() {
        std::io::ErrorKind::ConnectionRefused => "connection refused".to_string(),
        std::io::ErrorKind::TimedOut => "timed out".to_string(),
        _ => e.to_string(),
    };
    anyhow!("cannot connect to {address}: {why}")
}

/// The request every call of a run sends again: the encoded body, the head to send
/// it with, and where.
#[derive(Debug)]
pub struct Call {
    address: String,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
    grpc: bool,
}

impl Call {
    /// `POST path` over HTTP/1.1, with a JSON (or JSON and binary) body and `extra`
    /// headers.
    pub fn http(
        address: &str,
        path: &str,
        body: HttpBody,
        extra: &HeaderMap,
    ) -> anyhow::Result<Self> {
        let mut headers = extra.clone();
        headers.insert(HOST, HeaderValue::from_str(address)?);
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        if let Some(n) = body.header_length {
            headers.insert("inference-header-content-length", n.into());
        }
        Ok(Call {
            address: address.to_string(),
            uri: path.parse()?,
            headers,
            body: body.bytes,
            grpc: false,
        })
    }

    /// `ModelInfer` over HTTP/2, the message already framed as gRPC frames it, with
    /// `extra` headers (gRPC metadata).
    pub fn grpc(address: &str, framed: Bytes, extra: &HeaderMap) -> anyhow::Result<Self> {
        let mut headers = extra.clone();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/grpc"));
        headers.insert(TE, HeaderValue::from_static("trailers"));
        Ok(Call {
            address: address.to_string(),
            uri: format!("http://{address}/inference.GRPCInferenceService/ModelInfer").parse()?,
            headers,
            body: framed,
            grpc: true,
        })
    }

    pub fn request(&self) -> Request<Full<Bytes>> {
        let mut request = Request::post(self.uri.clone())
            .body(Full::new(self.body.clone()))
            .expect("a valid request");
        *request.headers_mut() = self.headers.clone();
        request
    }

    async fn connect(&self) -> anyhow::Result<Sender> {
        if !self.grpc {
            return Ok(Sender::H1(http_connect(&self.address).await?));
        }
        let stream = tokio::net::TcpStream::connect(&self.address)
            .await
            .map_err(|e| connect_error(&self.address, &e))?;
        stream.set_nodelay(true)?;
        let (sender, connection) = http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .map_err(|e| anyhow!("cannot talk HTTP/2 to {}: {e}", self.address))?;
        tokio::spawn(connection);
        Ok(Sender::H2(sender))
    }
}

const GRPC_STATUS: &str = "grpc-status";

/// Opens an HTTP/1.1 connection (no Nagle delay) to `address`.
pub async fn http_connect(address: &str) -> anyhow::Result<SendRequest<Full<Bytes>>> {
    let stream = tokio::net::TcpStream::connect(address)
        .await
        .map_err(|e| connect_error(address, &e))?;
    stream.set_nodelay(true)?;
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| anyhow!("cannot talk HTTP/1.1 to {address}: {e}"))?;
    tokio::spawn(connection);
    Ok(sender)
}

/// Sends one request on `sender` and awaits the reply's head.
pub async fn http_send(
    sender: &mut SendRequest<Full<Bytes>>,
    request: Request<Full<Bytes>>,
) -> Result<Response<Incoming>, hyper::Error> {
    sender.ready().await?;
    sender.send_request(request).await
}

/// Opens a gRPC channel (one HTTP/2 connection) to `address`; refused connections are
/// reported as such, not as tonic's "transport error".
pub async fn grpc_connect(address: &str) -> anyhow::Result<Channel> {
    drop(
        tokio::net::TcpStream::connect(address)
            .await
            .map_err(|e| connect_error(address, &e))?,
    );
    Endpoint::from_shared(format!("http://{address}"))?
        .tcp_nodelay(true)
        .connect()
        .await
        .map_err(|e| anyhow!("cannot open a gRPC channel to {address}: {e}"))
}

/// A worker's connection: HTTP/1.1, or HTTP/2 for gRPC (one connection per worker
/// either way, opened again after a failure that spoils it).
#[derive(Debug)]
pub struct Conn {
    call: Arc<Call>,
    sender: Option<Sender>,
}

#[derive(Debug)]
enum Sender {
    H1(SendRequest<Full<Bytes>>),
    H2(http2::SendRequest<Full<Bytes>>),
}

impl Conn {
    pub async fn open(call: Arc<Call>) -> anyhow::Result<Conn> {
        let sender = Some(call.connect().await?);
        Ok(Conn { call, sender })
    }

    /// A connection opened by its first call.
    pub fn lazy(call: Arc<Call>) -> Conn {
        Conn { call, sender: None }
    }

    /// One call, its reply read to the end and dropped.
    pub async fn call(&mut self) -> Result<(), Failure> {
        let transport = |e: &dyn std::fmt::Display| Failure {
            kind: format!("transport: {e}"),
            reconnect: true,
        };
        if self.sender.is_none() {
            match self.call.connect().await {
                Ok(s) => self.sender = Some(s),
                Err(e) => {
                    // Do not spin on a server that is gone.
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    return Err(transport(&e));
                }
            }
        }
        let request = self.call.request();
        let reply = match self.sender.as_mut().expect("connected above") {
            Sender::H1(s) => http_send(s, request).await,
            Sender::H2(s) => match s.ready().await {
                Ok(()) => s.send_request(request).await,
                Err(e) => Err(e),
            },
        }
        .map_err(|e| transport(&e))?;
        let status = reply.status();
        let mut grpc_status = reply.headers().get(GRPC_STATUS).cloned();
        let mut body = reply.into_body();
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| transport(&e))?;
            if let Some(code) = frame.trailers_ref().and_then(|t| t.get(GRPC_STATUS)) {
                grpc_status = Some(code.clone());
            }
        }
        let failure = |kind: String| {
            Err(Failure {
                kind,
                reconnect: false,
            })
        };
        if !status.is_success() {
            return failure(format!("HTTP {}", status.as_u16()));
        }
        if !self.call.grpc {
            return Ok(());
        }
        match grpc_status
            .as_ref()
            .map(|v| v.to_str().map(str::parse::<i32>))
        {
            Some(Ok(Ok(0))) => Ok(()),
            Some(Ok(Ok(code))) => failure(code_name(tonic::Code::from_i32(code))),
            _ => failure("gRPC: a reply without grpc-status".into()),
        }
    }

    /// Drops a connection that a failure or a timeout left unusable; the next call
    /// opens a new one.
    pub fn reconnect(&mut self) {
        self.sender = None;
    }
}

/// `gRPC RESOURCE_EXHAUSTED`, or `transport: …` for a status tonic made from a
/// connection failure.
pub fn grpc_kind(status: &tonic::Status) -> String {
    if std::error::Error::source(status).is_some() {
        return format!("transport: {}", status.message());
    }
    code_name(status.code())
}

/// `gRPC RESOURCE_EXHAUSTED`: the code as the protocol spells it.
fn code_name(code: tonic::Code) -> String {
    let mut name = String::from("gRPC ");
    for (i, c) in format!("{code:?}").chars().enumerate() {
        if c.is_uppercase() && i > 0 {
            name.push('_');
        }
        name.push(c.to_ascii_uppercase());
    }
    name
}
