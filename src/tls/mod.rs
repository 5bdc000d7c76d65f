//! TLS for the listeners (MQTT over TLS, MQTT over secure WebSocket, the admin API): the TLS settings checked,
//! the rustls server configurations built from them, the certificate reloaded on demand, and the client
//! certificate's identity. Owns no socket: the transports use what it builds.

pub mod certs;
pub mod identity;
pub mod resolver;
pub mod verifier;

use crate::config::{invalid, optional_addr, Config, ConfigError};
pub use crate::protocol::CertificateName;
use resolver::ReloadableCert;
use rustls::server::danger::ClientCertVerifier;
use rustls::server::WebPkiClientVerifier;
use rustls::{CommonState, ServerConfig};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

fn is_set(path: &Path) -> bool {
    !path.as_os_str().is_empty()
}

/// Checks how the TLS keys of `config` fit together (the files themselves are read at start-up).
pub(crate) fn validate_config(config: &Config) -> Result<(), ConfigError> {
    optional_addr("tls_bind", &config.tls_bind)?;
    optional_addr("wss_bind", &config.wss_bind)?;
    let (cert, key) = (is_set(&config.certfile), is_set(&config.keyfile));
    if cert != key {
        return Err(invalid(
            if cert { "keyfile" } else { "certfile" },
            "certfile and keyfile go together: set both (TLS on) or neither (TLS off)",
        ));
    }
    let needs_cert = [
        ("cafile", is_set(&config.cafile)),
        ("require_certificate", config.require_certificate),
        ("use_identity_as_username", config.use_identity_as_username),
        ("admin_tls", config.admin_tls),
    ];
    if let Some((name, _)) = needs_cert.iter().find(|(_, on)| *on && !cert) {
        return Err(invalid(name, "needs certfile and keyfile (TLS is off)"));
    }
    if config.require_certificate && !is_set(&config.cafile) {
        return Err(invalid(
            "require_certificate",
            "needs cafile, the CA certificates that client certificates are verified against",
        ));
    }
    if config.use_identity_as_username && !config.require_certificate {
        return Err(invalid(
            "use_identity_as_username",
            "needs require_certificate = true (as in Mosquitto): every client must then present a certificate",
        ));
    }
    Ok(())
}

/// The TLS listeners `config` turns on, as (MQTT over TLS, MQTT over secure WebSocket) addresses: both off
/// without a certificate, each off when its address is empty.
pub fn listener_addrs(
    config: &Config,
) -> Result<(Option<SocketAddr>, Option<SocketAddr>), ConfigError> {
    if !is_set(&config.certfile) {
        return Ok((None, None));
    }
    Ok((
        optional_addr("tls_bind", &config.tls_bind)?,
        optional_addr("wss_bind", &config.wss_bind)?,
    ))
}

/// TLS as configured, shared by every TLS listener of a broker. The certificate can be read again
/// ([`Tls::reload`]); the CA file is read at start-up only.
#[derive(Debug)]
pub struct Tls {
    certfile: PathBuf,
    keyfile: PathBuf,
    cert: Arc<ReloadableCert>,
    mqtt: ServerConfig,
    admin: ServerConfig,
    identity_as_username: bool,
}

impl Tls {
    /// The TLS `config` asks for, with its files read and checked; `None` without a certificate. An error
    /// names the setting, the file and what is wrong with it.
    pub fn from_config(config: &Config) -> Result<Option<Arc<Tls>>, ConfigError> {
        validate_config(config)?;
        if !is_set(&config.certfile) {
            return Ok(None);
        }
        let key = certs::certified_key(&config.certfile, &config.keyfile)?;
        let verifier = if is_set(&config.cafile) {
            certs::client_verifier(&config.cafile, config.require_certificate)?
        } else {
            WebPkiClientVerifier::no_client_auth()
        };
        let cert = Arc::new(ReloadableCert::new(key));
        Ok(Some(Arc::new(Tls {
            certfile: config.certfile.clone(),
            keyfile: config.keyfile.clone(),
            mqtt: server_config(&cert, verifier)?,
            admin: server_config(&cert, WebPkiClientVerifier::no_client_auth())?,
            cert,
            identity_as_username: config.use_identity_as_username,
        })))
    }

    /// Reads the certificate and key files again; the next handshakes use them, established connections keep
    /// theirs. Files that cannot be used change nothing, and the error says which and why.
    pub fn reload(&self) -> Result<(), ConfigError> {
        let key = certs::certified_key(&self.certfile, &self.keyfile)?;
        self.cert.replace(key);
        Ok(())
    }

    /// The certificate file, for logs.
    pub fn certfile(&self) -> &Path {
        &self.certfile
    }

    /// The server configuration of the MQTT listeners (TLS and secure WebSocket): TLS 1.2 and 1.3, the
    /// reloadable certificate, client certificates as `cafile` and `require_certificate` say.
    pub fn mqtt_config(&self) -> ServerConfig {
        self.mqtt.clone()
    }

    /// The server configuration of the admin API (https): the same certificate, no client certificates.
    pub fn admin_config(&self) -> ServerConfig {
        self.admin.clone()
    }

    /// What a connection's client certificate makes its user name, when `use_identity_as_username` is on.
    pub fn identity(&self, connection: &CommonState) -> Option<CertificateName> {
        if !self.identity_as_username {
            return None;
        }
        let name = connection
            .peer_certificates()
            .and_then(|chain| chain.first())
            .and_then(identity::certificate_name);
        Some(match name {
            Some(name) => CertificateName::Name(name.into()),
            None => CertificateName::Missing,
        })
    }
}

/// A server configuration with TLS 1.3 and 1.2, the reloadable certificate and `verifier` for client
/// certificates.
fn server_config(
    cert: &Arc<ReloadableCert>,
    verifier: Arc<dyn ClientCertVerifier>,
) -> Result<ServerConfig, ConfigError> {
    let config = ServerConfig::builder_with_provider(certs::provider())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| invalid("certfile", format!("no usable TLS version: {e}")))?
        .with_client_cert_verifier(verifier)
        .with_cert_resolver(cert.clone());
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The key named by the error `config` gives, or `None` when it is valid.
    fn refused_key(config: Config) -> Option<&'static str> {
        match validate_config(&config) {
            Ok(()) => None,
            Err(ConfigError::Invalid { key, .. }) => Some(key),
            Err(other) => panic!("{other}"),
        }
    }

    fn with_cert() -> Config {
        Config {
            certfile: "server.crt".into(),
            keyfile: "server.key".into(),
            ..Config::default()
        }
    }

    #[test]
    fn tls_settings_need_what_they_build_on() {
        assert_eq!(refused_key(Config::default()), None);
        assert_eq!(refused_key(with_cert()), None);
        let key_only = Config {
            keyfile: "k".into(),
            ..Config::default()
        };
        assert_eq!(refused_key(key_only), Some("certfile"));
        let cert_only = Config {
            certfile: "c".into(),
            ..Config::default()
        };
        assert_eq!(refused_key(cert_only), Some("keyfile"));
        for (config, key) in [
            (
                Config {
                    cafile: "ca".into(),
                    ..Config::default()
                },
                "cafile",
            ),
            (
                Config {
                    admin_tls: true,
                    ..Config::default()
                },
                "admin_tls",
            ),
            (
                Config {
                    require_certificate: true,
                    ..with_cert()
                },
                "require_certificate",
            ),
            (
                Config {
                    cafile: "ca".into(),
                    use_identity_as_username: true,
                    ..with_cert()
                },
                "use_identity_as_username",
            ),
            (
                Config {
                    tls_bind: "nowhere".into(),
                    ..with_cert()
                },
                "tls_bind",
            ),
        ] {
            assert_eq!(refused_key(config), Some(key));
        }
    }

    #[test]
    fn tls_listeners_are_on_only_with_a_certificate() {
        assert_eq!(listener_addrs(&Config::default()).unwrap(), (None, None));
        let (tls, wss) = listener_addrs(&with_cert()).unwrap();
        assert_eq!(tls, Some("0.0.0.0:8883".parse().unwrap()));
        assert_eq!(wss, Some("0.0.0.0:8084".parse().unwrap()));
        let off = Config {
            tls_bind: String::new(),
            wss_bind: String::new(),
            ..with_cert()
        };
        assert_eq!(listener_addrs(&off).unwrap(), (None, None));
    }
}
