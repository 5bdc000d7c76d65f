//! What the admin commands trust when the admin API is served over https (`admin_tls`): the CA certificates of
//! `--admin-cafile`, or else exactly the certificate the broker's own `certfile` holds (the commands run
//! beside the broker, with its configuration). Owns the client TLS configuration only.

use crate::config::Config;
use crate::tls::certs::{provider, read_certificates, read_roots};
use crate::tls::verifier::ExpectedCertificate;
use rustls::ClientConfig;
use std::path::Path;
use std::sync::Arc;

/// The TLS configuration of an admin client: trusting `cafile`'s CAs when given, else the certificate of
/// `config`'s `certfile`. The error names the file.
pub fn client_config(config: &Config, cafile: Option<&Path>) -> anyhow::Result<Arc<ClientConfig>> {
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| anyhow::anyhow!("no usable TLS version: {e}"))?;
    let config = match cafile {
        Some(cafile) => builder
            .with_root_certificates(read_roots("admin-cafile", cafile)?)
            .with_no_client_auth(),
        None if !config.certfile.as_os_str().is_empty() => {
            let chain = read_certificates("certfile", &config.certfile)?;
            let pinned = chain.into_iter().next().map(|c| c.into_owned());
            let Some(pinned) = pinned else {
                anyhow::bail!("{}: no certificate", config.certfile.display());
            };
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(ExpectedCertificate::pinned(
                    pinned,
                    provider(),
                )))
                .with_no_client_auth()
        }
        None => anyhow::bail!(
            "the admin API is served over https: give --admin-cafile FILE (the CA of its certificate) or \
             --config with the broker's certfile"
        ),
    };
    Ok(Arc::new(config))
}
