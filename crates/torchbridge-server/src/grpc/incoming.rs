//! The gRPC listener's connections, each admitted once it has sent its first byte. tonic
//! (hyper's HTTP/2) waits for a client's connection preface without a deadline, so a
//! client that connects and says nothing would hold a connection and a file descriptor
//! for good; here it is dropped after the client timeout. Once HTTP/2 is up, keep-alive
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
                let mut first = [0u8; 1];
                match tokio::time::timeout(client_timeout, tcp.peek(&mut first)).await {
                    Ok(Ok(n)) if n > 0 => {
                        let _ = ready.send(Ok(tcp)).await;
                    }
                    Ok(_) => {}
                    Err(_) => tracing::debug!(%peer, "gRPC client sent nothing in time; closed"),
                }
            });
        }
    });
    ReceiverStream::new(stream)
}
