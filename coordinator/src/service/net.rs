//! The listening side: TLS from certificate files, and accepted connections counted
//! against `--max-connections`.

use std::pin::Pin;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;
use tokio_stream::{Stream, StreamExt};
use tonic::transport::server::{Connected, TcpConnectInfo};
use tonic::transport::{Certificate, Identity, ServerTlsConfig};

use crate::error::{Error, Result};
use crate::security::TlsFiles;

pub(super) fn tls_config(files: &TlsFiles) -> Result<ServerTlsConfig> {
    let read = |path: &std::path::Path, what: &str| {
        std::fs::read(path)
            .map_err(|e| Error::InvalidArgument(format!("cannot read the TLS {what} {}: {e}", path.display())))
    };
    let mut tls = ServerTlsConfig::new()
        .identity(Identity::from_pem(read(&files.cert, "certificate")?, read(&files.key, "key")?));
    if let Some(ca) = &files.client_ca {
        // Optional at the TLS layer so people's commands need no certificate; the worker
        // service's gate requires one.
        tls = tls.client_ca_root(Certificate::from_pem(read(ca, "client CA")?)).client_auth_optional(true);
    }
    Ok(tls)
}

/// A connection counted against `--max-connections` until it closes.
pub(super) struct Limited {
    stream: tokio::net::TcpStream,
    _permit: tokio::sync::OwnedSemaphorePermit,
}

impl tokio::io::AsyncRead for Limited {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_read(cx, buf)
    }
}

impl tokio::io::AsyncWrite for Limited {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> std::task::Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }
}

impl Connected for Limited {
    type ConnectInfo = TcpConnectInfo;
    fn connect_info(&self) -> TcpConnectInfo {
        self.stream.connect_info()
    }
}

/// Accepted connections, at most `max` open at once: one more is closed at accept, and
/// logged, so a flood of idle connections cannot exhaust the coordinator's descriptors.
pub(super) fn limited(listener: TcpListener, max: usize) -> impl Stream<Item = std::io::Result<Limited>> {
    let permits = Arc::new(tokio::sync::Semaphore::new(max));
    TcpListenerStream::new(listener).filter_map(move |accepted| match accepted {
        Err(e) => Some(Err(e)),
        Ok(stream) => match Arc::clone(&permits).try_acquire_owned() {
            Ok(permit) => {
                // Small gRPC responses must not wait for the peer's delayed ACK (Nagle):
                // without this a Lease answer took 40 ms.
                if let Err(e) = stream.set_nodelay(true) {
                    tracing::warn!("cannot set TCP_NODELAY: {e}");
                }
                Some(Ok(Limited { stream, _permit: permit }))
            }
            Err(_) => {
                let peer = stream.peer_addr().map_or_else(|_| "unknown peer".into(), |a| a.to_string());
                tracing::warn!(peer = %peer, "refused a connection: {max} are open (--max-connections)");
                None
            }
        },
    })
}
