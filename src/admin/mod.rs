//! The admin side of harbormq: the HTTP admin API the broker serves, and the `sessions`, `retained` and
//! `stats` commands that use it, or read the database file when the broker is down. Never a second writer.

pub mod cli;
pub mod client;
pub mod http;
pub mod https;
pub mod metrics;
pub mod model;
pub mod offline;
pub mod render;

use crate::config::Config;
use std::path::{Path, PathBuf};

/// The file in the data directory that holds a generated admin token.
pub const TOKEN_FILE_NAME: &str = "admin.token";

/// The token file of a data directory.
pub fn token_path(data_dir: &Path) -> PathBuf {
    data_dir.join(TOKEN_FILE_NAME)
}

/// The configured token, or a new random one written to `<data_dir>/admin.token` (mode 0600).
pub fn resolve_token(config: &Config) -> std::io::Result<String> {
    if !config.admin_token.is_empty() {
        return Ok(config.admin_token.clone());
    }
    let token: String = (0..32)
        .map(|_| format!("{:02x}", rand::random::<u8>()))
        .collect();
    std::fs::create_dir_all(&config.data_dir)?;
    let path = token_path(&config.data_dir);
    write_private(&path, token.as_bytes())?;
    log::info!("admin API token written to {}", path.display());
    Ok(token)
}

#[cfg(unix)]
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    // An existing file keeps its mode on open: narrow it before the new token is in it.
    file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    file.write_all(bytes)
}

#[cfg(not(unix))]
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    std::fs::write(path, bytes)
}

/// Starts the admin API when `admin_bind` is set, over https with `https`'s certificate when given
/// (`admin_tls`); a failure is logged and the broker runs without it.
pub fn start(
    config: &Config,
    https: Option<&std::sync::Arc<crate::tls::Tls>>,
    context: impl FnOnce(String) -> http::AdminContext,
) -> Option<http::AdminServer> {
    let addr = match config.admin_addr() {
        Ok(Some(addr)) => addr,
        Ok(None) => return None,
        Err(e) => {
            log::error!("admin API not started: {e}");
            return None;
        }
    };
    let token = match resolve_token(config) {
        Ok(token) => token,
        Err(e) => {
            log::error!(
                "admin API not started: cannot write {}: {e}",
                token_path(&config.data_dir).display()
            );
            return None;
        }
    };
    let scheme = if https.is_some() { "HTTPS" } else { "HTTP" };
    match http::serve(addr, context(token), https.map(|tls| tls.admin_config())) {
        Ok(server) => {
            log::info!("admin {scheme} API on {}", server.addr());
            Some(server)
        }
        Err(e) => {
            log::error!("admin API not started: cannot listen on {addr}: {e}");
            None
        }
    }
}
