//! The server certificate as every TLS handshake finds it: one slot, replaced whole on reload, so a renewed
//! certificate applies to the next connection while established ones keep theirs.

use crate::reload::Current;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use std::sync::Arc;

/// The current certificate and key of the TLS listeners.
pub type ReloadableCert = Current<CertifiedKey>;

impl ResolvesServerCert for ReloadableCert {
    fn resolve(&self, _: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.get())
    }
}
