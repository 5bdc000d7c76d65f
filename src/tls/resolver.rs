//! The server certificate as every TLS handshake finds it: one slot, replaced whole on reload, so a renewed
//! certificate applies to the next connection while established ones keep theirs.

use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use std::sync::{Arc, RwLock};

/// The current certificate and key of the TLS listeners.
#[derive(Debug)]
pub struct ReloadableCert {
    current: RwLock<Arc<CertifiedKey>>,
}

impl ReloadableCert {
    /// A slot holding `key`.
    pub fn new(key: CertifiedKey) -> Self {
        ReloadableCert {
            current: RwLock::new(Arc::new(key)),
        }
    }

    /// The certificate handshakes use now.
    pub fn current(&self) -> Arc<CertifiedKey> {
        match self.current.read() {
            Ok(key) => Arc::clone(&key),
            Err(poisoned) => Arc::clone(&poisoned.into_inner()),
        }
    }

    /// Puts `key` in place for every later handshake.
    pub fn replace(&self, key: CertifiedKey) {
        match self.current.write() {
            Ok(mut current) => *current = Arc::new(key),
            Err(poisoned) => *poisoned.into_inner() = Arc::new(key),
        }
    }
}

impl ResolvesServerCert for ReloadableCert {
    fn resolve(&self, _: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current())
    }
}
