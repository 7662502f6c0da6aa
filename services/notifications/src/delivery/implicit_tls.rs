//! TLS from the first byte (`tls = "tls"`, port 465) on a socket we open
//! with TCP_NODELAY. lettre's own implicit-TLS connect keeps Nagle's
//! algorithm, and it writes a message's body and the final "." separately,
//! so on a kept connection every mail waited for the server's delayed ACK
//! (about 40 ms). lettre then speaks SMTP over this stream as over any other.

use std::{
    io,
    net::SocketAddr,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
};

use lettre::transport::smtp::client::AsyncTokioStream;
use rustls::{ClientConfig, RootCertStore, pki_types::CertificateDer, pki_types::ServerName};
use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    net::TcpStream,
};
use tokio_rustls::{TlsConnector, client::TlsStream};

/// Connects TLS sessions to one relay, trusting the public roots and
/// `extra_roots` (`notifications.smtp.ca_file`).
pub struct Connector {
    connector: TlsConnector,
    server: ServerName<'static>,
}

impl Connector {
    pub fn new(host: &str, extra_roots: &[CertificateDer<'static>]) -> Result<Self, String> {
        let mut roots = RootCertStore::empty();
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        for cert in extra_roots {
            roots
                .add(cert.clone())
                .map_err(|e| format!("notifications.smtp.ca_file: {e}"))?;
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("notifications.smtp.tls: {e}"))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        let server = ServerName::try_from(host.to_owned())
            .map_err(|e| format!("notifications.smtp.host {host:?}: {e}"))?;
        Ok(Self {
            connector: TlsConnector::from(Arc::new(config)),
            server,
        })
    }

    /// The TLS session over `tcp`, the relay's certificate verified.
    pub async fn connect(&self, tcp: TcpStream) -> io::Result<Stream> {
        let stream = self.connector.connect(self.server.clone(), tcp).await?;
        Ok(Stream(stream))
    }
}

/// A TLS session as lettre's transport.
#[derive(Debug)]
pub struct Stream(TlsStream<TcpStream>);

impl AsyncTokioStream for Stream {
    fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.0.get_ref().0.peer_addr()
    }
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_read(cx, buf)
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().0).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_shutdown(cx)
    }
}
