//! Server certificate checks for harbormq's own TLS clients where no CA decides: the admin commands trust
//! exactly the broker's `certfile` certificate, `harbormq bench --insecure` any certificate. The handshake
//! signatures are checked either way, so the server must hold the key.

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use std::sync::Arc;

/// Accepts one expected certificate, whatever name it carries, or any certificate.
#[derive(Debug)]
pub struct ExpectedCertificate {
    /// `None`: any certificate.
    expected: Option<CertificateDer<'static>>,
    provider: Arc<CryptoProvider>,
}

impl ExpectedCertificate {
    /// Exactly `cert`.
    pub fn pinned(cert: CertificateDer<'static>, provider: Arc<CryptoProvider>) -> Self {
        ExpectedCertificate {
            expected: Some(cert),
            provider,
        }
    }

    /// Any certificate (for measuring a real handshake against a broker whose CA is not at hand).
    pub fn any(provider: Arc<CryptoProvider>) -> Self {
        ExpectedCertificate {
            expected: None,
            provider,
        }
    }
}

impl ServerCertVerifier for ExpectedCertificate {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match &self.expected {
            Some(expected) if expected.as_ref() != end_entity.as_ref() => {
                Err(rustls::Error::General(
                    "the server's certificate is not the one in the broker's certfile (renewed since? \
                     reload the broker, or give a CA file)"
                        .to_owned(),
                ))
            }
            _ => Ok(ServerCertVerified::assertion()),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        let algorithms = &self.provider.signature_verification_algorithms;
        verify_tls12_signature(message, cert, dss, algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        let algorithms = &self.provider.signature_verification_algorithms;
        verify_tls13_signature(message, cert, dss, algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}
