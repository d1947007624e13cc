//! TLS for both transports with rustls (the `ring` provider: it builds with a C compiler
//! alone). The PEM files are read and checked once at start-up, so a bad certificate or
//! key fails `serve` with the file's name rather than the first handshake.
//!
//! gRPC hands the PEM to tonic's own rustls acceptor. HTTP accepts through
//! [`TlsListener`]: a task accepts TCP connections and runs each handshake in its own
//! task under a time limit, so a client that stalls mid-handshake holds up no one, and
//! axum's serve loop (graceful shutdown included) sees only finished TLS streams.

use std::io;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::crypto::{CryptoProvider, ring};
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::server::WebPkiClientVerifier;
use tokio_rustls::rustls::{RootCertStore, ServerConfig};
use tokio_rustls::server::TlsStream;

use crate::SetupError;

/// A client has this long to finish its TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The server's certificate and key, and the CA client certificates must chain to
/// when clients are verified.
#[derive(Clone)]
pub struct TlsSettings {
    cert_pem: Vec<u8>,
    key_pem: Vec<u8>,
    client_ca_pem: Option<Vec<u8>>,
    http: Arc<ServerConfig>,
}

impl std::fmt::Debug for TlsSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsSettings")
            .field("verifies_clients", &self.client_ca_pem.is_some())
            .finish_non_exhaustive()
    }
}

fn read(flag: &str, path: &Path) -> Result<Vec<u8>, SetupError> {
    std::fs::read(path)
        .map_err(|e| SetupError(format!("{flag} {}: cannot read it: {e}", path.display())))
}

fn certificates(
    flag: &str,
    path: &Path,
    pem: &[u8],
) -> Result<Vec<CertificateDer<'static>>, SetupError> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| SetupError(format!("{flag} {}: {e}", path.display())))?;
    if certs.is_empty() {
        return Err(SetupError(format!(
            "{flag} {}: no PEM certificate (`-----BEGIN CERTIFICATE-----`) in it",
            path.display()
        )));
    }
    Ok(certs)
}

/// A PEM file and the name the user gave it by (a flag such as `--tls-cert`, or a
/// keyword argument), which errors about it lead with.
#[derive(Debug, Clone, Copy)]
pub struct PemFile<'a> {
    pub name: &'a str,
    pub path: &'a Path,
}

impl TlsSettings {
    /// Reads and checks the certificate chain, its key and, when given, the CA that
    /// client certificates must chain to (then every client must present one).
    pub fn from_files(
        cert: PemFile<'_>,
        key: PemFile<'_>,
        client_ca: Option<PemFile<'_>>,
    ) -> Result<Self, SetupError> {
        let cert_pem = read(cert.name, cert.path)?;
        let key_pem = read(key.name, key.path)?;
        let client_ca_pem = client_ca.map(|f| read(f.name, f.path)).transpose()?;
        let chain = certificates(cert.name, cert.path, &cert_pem)?;
        let private_key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| {
            SetupError(format!(
                "{} {}: no usable PEM private key in it ({e})",
                key.name,
                key.path.display()
            ))
        })?;
        let provider = Arc::new(ring::default_provider());
        let builder = ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| SetupError(format!("TLS setup failed: {e}")))?;
        let builder = match (&client_ca_pem, client_ca) {
            (Some(pem), Some(file)) => {
                builder.with_client_cert_verifier(client_verifier(file, pem, provider)?)
            }
            _ => builder.with_no_client_auth(),
        };
        let mut http = builder.with_single_cert(chain, private_key).map_err(|e| {
            SetupError(format!(
                "{} {} and {} {} do not make a usable pair: {e}",
                cert.name,
                cert.path.display(),
                key.name,
                key.path.display()
            ))
        })?;
        // The HTTP port speaks HTTP/1.1 only (gRPC has its own port): offering h2 made
        // clients that prefer it (curl, Go, browsers) fail on the first request.
        http.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(TlsSettings {
            cert_pem,
            key_pem,
            client_ca_pem,
            http: Arc::new(http),
        })
    }

    /// Whether clients must present a certificate.
    pub fn verifies_clients(&self) -> bool {
        self.client_ca_pem.is_some()
    }

    /// tonic's TLS settings for the gRPC listener.
    pub(crate) fn grpc(&self) -> tonic::transport::ServerTlsConfig {
        use tonic::transport::{Certificate, Identity, ServerTlsConfig};
        let config = ServerTlsConfig::new()
            .identity(Identity::from_pem(&self.cert_pem, &self.key_pem))
            .timeout(HANDSHAKE_TIMEOUT);
        match &self.client_ca_pem {
            Some(ca) => config.client_ca_root(Certificate::from_pem(ca)),
            None => config,
        }
    }
}

fn client_verifier(
    file: PemFile<'_>,
    pem: &[u8],
    provider: Arc<CryptoProvider>,
) -> Result<Arc<dyn tokio_rustls::rustls::server::danger::ClientCertVerifier>, SetupError> {
    let fail = |e: &dyn std::fmt::Display| {
        SetupError(format!("{} {}: {e}", file.name, file.path.display()))
    };
    let mut roots = RootCertStore::empty();
    for cert in certificates(file.name, file.path, pem)? {
        roots.add(cert).map_err(|e| fail(&e))?;
    }
    WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
        .build()
        .map_err(|e| fail(&e))
}

/// An axum listener that yields TLS streams whose handshake has finished.
#[derive(Debug)]
pub(crate) struct TlsListener {
    local: SocketAddr,
    ready: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    accepting: JoinHandle<()>,
}

impl TlsListener {
    pub(crate) fn new(tcp: TcpListener, tls: &TlsSettings) -> io::Result<Self> {
        let local = tcp.local_addr()?;
        let acceptor = TlsAcceptor::from(tls.http.clone());
        let (tx, ready) = mpsc::channel(64);
        let accepting = tokio::spawn(async move {
            loop {
                let (stream, peer) = match tcp.accept().await {
                    Ok(accepted) => accepted,
                    Err(e) => {
                        // Out of file descriptors and the like: wait rather than spin.
                        tracing::warn!("accepting a connection failed: {e}");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                if tx.is_closed() {
                    return;
                }
                // Small requests and replies: send each at once (no Nagle delay).
                let _ = stream.set_nodelay(true);
                let (acceptor, tx) = (acceptor.clone(), tx.clone());
                tokio::spawn(async move {
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                        Ok(Ok(tls)) => {
                            let _ = tx.send((tls, peer)).await;
                        }
                        Ok(Err(e)) => tracing::debug!(%peer, "TLS handshake failed: {e}"),
                        Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                    }
                });
            }
        });
        Ok(TlsListener {
            local,
            ready,
            accepting,
        })
    }
}

impl Drop for TlsListener {
    fn drop(&mut self) {
        self.accepting.abort();
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.ready.recv().await {
            Some(accepted) => accepted,
            // The accepting task is gone only once the listener is dropped.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        Ok(self.local)
    }
}
