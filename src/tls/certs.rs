//! Reading PEM files into what rustls needs: a server certificate chain with its key (checked to match) and
//! the CA certificates client certificates are verified against. Every error names the file and what is wrong.

use crate::config::{invalid, ConfigError};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::sign::CertifiedKey;
use rustls::{InconsistentKeys, RootCertStore};
use std::path::Path;
use std::sync::Arc;

/// The crypto provider of every TLS endpoint of harbormq: ring, which builds without a C toolchain beyond cc.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The certificates of a PEM file, in order; `key` names the setting the file comes from.
pub fn read_certificates(
    key: &'static str,
    path: &Path,
) -> Result<Vec<CertificateDer<'static>>, ConfigError> {
    let shown = path.display();
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| invalid(key, format!("{shown}: {}", pem_reason(e))))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| invalid(key, format!("{shown}: {}", pem_reason(e))))?;
    if certs.is_empty() {
        return Err(invalid(
            key,
            format!("{shown}: no PEM CERTIFICATE block in the file"),
        ));
    }
    Ok(certs)
}

/// The CA certificates of a PEM file, as the trust anchors of a TLS endpoint; `key` names the setting (or
/// flag) the file comes from.
pub fn read_roots(key: &'static str, path: &Path) -> Result<RootCertStore, ConfigError> {
    let mut roots = RootCertStore::empty();
    for cert in read_certificates(key, path)? {
        roots.add(cert).map_err(|e| {
            invalid(
                key,
                format!("{}: a CA certificate cannot be used: {e}", path.display()),
            )
        })?;
    }
    Ok(roots)
}

/// A PEM error in words, an unreadable file told apart from one that is not PEM.
pub(crate) fn pem_reason(e: rustls::pki_types::pem::Error) -> String {
    use rustls::pki_types::pem::Error;
    let text = |bytes: &[u8]| String::from_utf8_lossy(bytes).trim().to_owned();
    match e {
        Error::Io(e) => format!("cannot read the file: {e}"),
        Error::NoItemsFound => "no PEM block of the expected kind in the file".to_owned(),
        Error::MissingSectionEnd { end_marker } => format!(
            "not a valid PEM file: a block has no `{}` line",
            text(&end_marker)
        ),
        Error::IllegalSectionStart { line } => {
            format!("not a valid PEM file: malformed line `{}`", text(&line))
        }
        Error::Base64Decode(e) => format!("not a valid PEM file: a block is not base64 ({e})"),
        other => format!("not a valid PEM file: {other}"),
    }
}

/// The certificate chain of `certfile` with the private key of `keyfile`, checked to belong together.
pub fn certified_key(certfile: &Path, keyfile: &Path) -> Result<CertifiedKey, ConfigError> {
    let chain = read_certificates("certfile", certfile)?;
    let der = PrivateKeyDer::from_pem_file(keyfile).map_err(|e| {
        invalid(
            "keyfile",
            format!(
                "{}: {} (a PRIVATE KEY block)",
                keyfile.display(),
                pem_reason(e)
            ),
        )
    })?;
    let key = provider().key_provider.load_private_key(der).map_err(|e| {
        invalid(
            "keyfile",
            format!("{}: not a usable private key: {e}", keyfile.display()),
        )
    })?;
    let certified = CertifiedKey::new(chain, key);
    match certified.keys_match() {
        // Some key types cannot tell their public key; the handshake then shows any mismatch.
        Ok(()) | Err(rustls::Error::InconsistentKeys(InconsistentKeys::Unknown)) => Ok(certified),
        Err(rustls::Error::InconsistentKeys(InconsistentKeys::KeyMismatch)) => Err(invalid(
            "keyfile",
            format!(
                "{}: the private key does not match the certificate of {}",
                keyfile.display(),
                certfile.display()
            ),
        )),
        Err(e) => Err(invalid(
            "certfile",
            format!(
                "{}: the first certificate cannot be used: {e}",
                certfile.display()
            ),
        )),
    }
}

/// The verifier of client certificates signed by a CA of `cafile`: mandatory when `required`, else a client
/// may present none (and one it presents must still verify).
pub fn client_verifier(
    cafile: &Path,
    required: bool,
) -> Result<Arc<dyn rustls::server::danger::ClientCertVerifier>, ConfigError> {
    let roots = read_roots("cafile", cafile)?;
    let builder = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider());
    let builder = if required {
        builder
    } else {
        builder.allow_unauthenticated()
    };
    builder
        .build()
        .map_err(|e| invalid("cafile", format!("{}: {e}", cafile.display())))
}
