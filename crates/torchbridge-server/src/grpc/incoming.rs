//! The gRPC listener's connections, each admitted once it has sent the 24 bytes of
//! HTTP/2's connection preface (or of a TLS handshake, which is longer). tonic (hyper's
//! HTTP/2) waits for the preface without a deadline, so a client that connects and says
//! nothing, or sends a byte at a time, would hold a connection and a file descriptor for
//! good; here it is dropped after the client timeout. Once HTTP/2 is up, keep-alive
//! pings (set on the server) find the peers that went away.

use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

/// The connections of `listener` that have spoken within `client_timeout`, with Nagle's
/// delay off. Accepting stops when the stream is dropped.
pub(crate) fn incoming(
    listener: TcpListener,
    client_timeout: Duration,
) -> ReceiverStream<std::io::Result<TcpStream>> {
    let (ready, stream) = mpsc::channel(64);
    tokio::spawn(async move {
        loop {
            let tcp = tokio::select! {
                accepted = listener.accept() => accepted,
                () = ready.closed() => return,
            };
            let (tcp, peer) = match tcp {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors and the like: wait rather than spin.
                    tracing::warn!("accepting a gRPC connection failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let _ = tcp.set_nodelay(true);
            let ready = ready.clone();
            tokio::spawn(async move {
                match tokio::time::timeout(client_timeout, preface(&tcp)).await {
                    Ok(true) => {
                        let _ = ready.send(Ok(tcp)).await;
                    }
                    Ok(false) => {}
                    Err(_) => tracing::debug!(
                        %peer,
                        "gRPC client did not send its connection preface in time; closed"
                    ),
                }
            });
        }
    });
    ReceiverStream::new(stream)
}

/// HTTP/2's client preface, `PRI * HTTP/2.0…`: 24 bytes.
const PREFACE_LEN: usize = 24;

/// Whether the client has sent a preface's worth of bytes (left unread, for hyper);
/// false when it closed first.
async fn preface(tcp: &TcpStream) -> bool {
    let mut head = [0u8; PREFACE_LEN];
    loop {
        match tcp.peek(&mut head).await {
            Ok(n) if n >= PREFACE_LEN => return true,
            Ok(0) | Err(_) => return false,
            // Part of it: peek returns at once while bytes wait, so poll for the rest.
            Ok(_) => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
}
