//! What the admin commands trust when the admin API is served over https (`admin_tls`): the CA certificates of
//! `--admin-cafile`, or else exactly the certificate the broker's own `certfile` holds (the commands run
//! beside the broker, with its configuration). Owns the client TLS configuration only.

use crate::config::Config;
use crate::tls::certs::{provider, read_certificates};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use std::path::Path;
use std::sync::Arc;

/// The TLS configuration of an admin client: trusting `cafile`'s CAs when given, else the certificate of
/// `config`'s `certfile`. The error names the file.
pub fn client_config(config: &Config, cafile: Option<&Path>) -> anyhow::Result<Arc<ClientConfig>> {
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| anyhow::anyhow!("no usable TLS version: {e}"))?;
    let config = match cafile {
        Some(cafile) => {
            let mut roots = RootCertStore::empty();
            for cert in read_certificates("admin-cafile", cafile)? {
                roots
                    .add(cert)
                    .map_err(|e| anyhow::anyhow!("--admin-cafile {}: {e}", cafile.display()))?;
            }
            builder.with_root_certificates(roots).with_no_client_auth()
        }
        None if !config.certfile.as_os_str().is_empty() => {
            let chain = read_certificates("certfile", &config.certfile)?;
            let pinned = chain.into_iter().next().map(|c| c.into_owned());
            let Some(pinned) = pinned else {
                anyhow::bail!("{}: no certificate", config.certfile.display());
            };
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(Pinned {
                    cert: pinned,
                    provider: provider(),
                }))
                .with_no_client_auth()
        }
        None => anyhow::bail!(
            "the admin API is served over https: give --admin-cafile FILE (the CA of its certificate) or \
             --config with the broker's certfile"
        ),
    };
    Ok(Arc::new(config))
}

/// Accepts exactly one certificate, whatever name it carries: the broker's own, read from its `certfile`.
/// Handshake signatures are checked as usual, so the server must hold its key.
#[derive(Debug)]
struct Pinned {
    cert: CertificateDer<'static>,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for Pinned {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if end_entity.as_ref() == self.cert.as_ref() {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::General(
                "the admin API's certificate is not the one in the broker's certfile (renewed since? \
                 reload the broker, or give --admin-cafile)"
                    .to_owned(),
            ))
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
