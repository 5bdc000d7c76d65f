//! `harbormq bench --tls`: the generator's connections over TLS (rustls with ring), trusting a CA file, or
//! with `--insecure` any certificate, for brokers with a self-signed one. Owns the byte stream of a
//! connection, plain or encrypted; knows nothing of MQTT.

use crate::tls::verifier::ExpectedCertificate;
use rustls::pki_types::ServerName;
use rustls::ClientConfig;
use std::io;
use std::path::Path;
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// How the generator's clients speak TLS: one configuration shared by every connection of a run.
#[derive(Clone)]
pub struct TlsClient {
    config: Arc<ClientConfig>,
    server_name: ServerName<'static>,
}

impl std::fmt::Debug for TlsClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TlsClient({:?})", self.server_name)
    }
}

impl PartialEq for TlsClient {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.config, &other.config) && self.server_name == other.server_name
    }
}

impl Eq for TlsClient {}

impl TlsClient {
    /// Clients that connect to `host` (checked against the certificate unless `insecure`), trusting the CA
    /// certificates of `cafile`, or every certificate when `insecure`. The error names the file.
    pub fn new(host: &str, cafile: Option<&Path>, insecure: bool) -> Result<TlsClient, String> {
        let provider = crate::tls::certs::provider();
        let builder = ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?;
        let config = match (cafile, insecure) {
            (_, true) => builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(ExpectedCertificate::any(provider)))
                .with_no_client_auth(),
            (Some(cafile), false) => builder
                .with_root_certificates(
                    crate::tls::certs::read_roots("cafile", cafile).map_err(|e| e.to_string())?,
                )
                .with_no_client_auth(),
            (None, false) => {
                return Err("--tls needs --cafile FILE (the CA to trust) or --insecure".to_owned())
            }
        };
        let server_name = ServerName::try_from(host.to_owned())
            .map_err(|e| format!("--host {host:?} is no TLS server name: {e}"))?;
        Ok(TlsClient {
            config: Arc::new(config),
            server_name,
        })
    }
}

/// A connection's bytes, over plain TCP or TLS.
#[derive(Debug)]
pub enum Stream {
    /// Plain TCP.
    Plain(TcpStream),
    /// TLS over TCP.
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

impl Stream {
    /// Connects to `addr` with `TCP_NODELAY`, then runs the TLS handshake when `tls` is given.
    pub async fn connect(addr: &str, tls: Option<&TlsClient>) -> io::Result<Stream> {
        let tcp = TcpStream::connect(addr).await?;
        tcp.set_nodelay(true)?;
        let Some(tls) = tls else {
            return Ok(Stream::Plain(tcp));
        };
        let connector = tokio_rustls::TlsConnector::from(tls.config.clone());
        let stream = connector.connect(tls.server_name.clone(), tcp).await?;
        Ok(Stream::Tls(Box::new(stream)))
    }

    /// Reads what is there into `buf`, waiting for at least one byte; 0 at the end.
    pub async fn read_buf(&mut self, buf: &mut bytes::BytesMut) -> io::Result<usize> {
        match self {
            Stream::Plain(s) => s.read_buf(buf).await,
            Stream::Tls(s) => s.read_buf(buf).await,
        }
    }

    /// Reads what is there without waiting: `WouldBlock` when nothing is.
    pub fn try_read_buf(&mut self, buf: &mut bytes::BytesMut) -> io::Result<usize> {
        match self {
            Stream::Plain(s) => s.try_read_buf(buf),
            // One poll: decrypted bytes already there, or whatever the socket holds now.
            Stream::Tls(s) => match futures::FutureExt::now_or_never(s.read_buf(buf)) {
                Some(read) => read,
                None => Err(io::ErrorKind::WouldBlock.into()),
            },
        }
    }

    /// Writes all of `bytes` (one TLS record per 16 KiB, not per packet: the caller batches).
    pub async fn write_all(&mut self, bytes: &[u8]) -> io::Result<()> {
        match self {
            Stream::Plain(s) => s.write_all(bytes).await,
            Stream::Tls(s) => {
                s.write_all(bytes).await?;
                s.flush().await
            }
        }
    }

    /// Closes the connection (with TLS's close_notify).
    pub async fn shutdown(&mut self) -> io::Result<()> {
        match self {
            Stream::Plain(s) => s.shutdown().await,
            Stream::Tls(s) => s.shutdown().await,
        }
    }
}
