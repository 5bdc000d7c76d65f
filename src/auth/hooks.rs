//! The password file and `allow_anonymous` as an authenticate hook: an implementation of the same [`Hooks`]
//! trait an embedding application implements, so built-in and application checks take one path (the broker
//! runs both with [`Chain`](crate::broker::hooks::Chain)). It screens CONNECT only, so configuring it does not
//! put publishes and subscriptions through the hooks.

use super::password_file::PasswordFile;
use crate::broker::hooks::{ready, AuthDecision, ConnectInfo, HookFuture, Hooks};
use crate::codec::ReasonCode;
use crate::config::{Config, ConfigError};
use std::path::Path;
use std::sync::Arc;

/// Who may connect, by user name and password.
#[derive(Debug, Clone)]
pub struct PasswordAuth {
    /// `None`: no password file, so a user name proves nothing.
    file: Option<Arc<PasswordFile>>,
    allow_anonymous: bool,
}

impl PasswordAuth {
    /// The checks `config` asks for: `None` when it lets everyone in (no password file, anonymous allowed).
    /// A password file that cannot be read or parsed is an error naming the file (and the line).
    pub fn from_config(config: &Config) -> Result<Option<PasswordAuth>, ConfigError> {
        let allow_anonymous = config.anonymous_allowed();
        let file = match config.password_file() {
            Some(path) => Some(Arc::new(load(path)?)),
            None if allow_anonymous => return Ok(None),
            None => None,
        };
        Ok(Some(PasswordAuth {
            file,
            allow_anonymous,
        }))
    }

    /// Checks against `file`, letting anonymous clients in or not.
    pub fn new(file: PasswordFile, allow_anonymous: bool) -> PasswordAuth {
        PasswordAuth {
            file: Some(Arc::new(file)),
            allow_anonymous,
        }
    }
}

/// Reads a password file; the error names the file, and the line when one is wrong.
pub fn load(path: &Path) -> Result<PasswordFile, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Invalid {
        key: "password_file",
        reason: format!("cannot read {}: {e}", path.display()),
    })?;
    PasswordFile::parse(&text).map_err(|e| ConfigError::Invalid {
        key: "password_file",
        reason: format!("{}: {e}", path.display()),
    })
}

impl Hooks for PasswordAuth {
    /// A client without a user name: `allow_anonymous` decides (0x05 / 0x87 Not authorized when refused). A
    /// client with one: its password must match the file's line (0x04 / 0x86 Bad user name or password
    /// otherwise, as for an unknown user). The hash is checked on the blocking pool: at the default
    /// iteration count it takes milliseconds, which the session thread's other clients must not wait for.
    fn authenticate<'a>(&'a self, connect: &'a ConnectInfo) -> HookFuture<'a, AuthDecision> {
        let (Some(user), Some(file)) = (&connect.username, &self.file) else {
            return ready(match (&connect.username, self.allow_anonymous) {
                (None, true) => AuthDecision::Allow,
                _ => AuthDecision::Refuse(ReasonCode::NOT_AUTHORIZED),
            });
        };
        let file = Arc::clone(file);
        let user = user.to_string();
        let password = connect.password.clone().unwrap_or_default();
        Box::pin(async move {
            let matches = tokio::task::spawn_blocking(move || file.check(&user, &password))
                .await
                .unwrap_or(false);
            if matches {
                AuthDecision::Allow
            } else {
                AuthDecision::Refuse(ReasonCode::BAD_USERNAME_OR_PASSWORD)
            }
        })
    }
}
