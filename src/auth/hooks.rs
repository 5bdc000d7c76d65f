//! The password file and `allow_anonymous` as an authenticate hook: an implementation of the same [`Hooks`]
//! trait an embedding application implements, so built-in and application checks take one path (the broker
//! runs both with [`Chain`](crate::broker::hooks::Chain)). It screens CONNECT only, so configuring it does not
//! put publishes and subscriptions through the hooks.

use super::password_file::PasswordFile;
use crate::broker::hooks::{ready, AuthDecision, ConnectInfo, HookFuture, Hooks};
use crate::codec::ReasonCode;
use crate::config::{Config, ConfigError};
use crate::reload::{read_setting_file, Current};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Who may connect, by user name and password. Clones share the file, so a reload through any of them
/// applies to every CONNECT after it.
#[derive(Debug, Clone)]
pub struct PasswordAuth {
    /// `None`: no password file, so a user name proves nothing.
    file: Option<Arc<FileSlot>>,
    allow_anonymous: bool,
}

/// A password file as last read, and where it comes from.
#[derive(Debug)]
struct FileSlot {
    /// `None` for a file given in memory, which cannot be read again.
    path: Option<PathBuf>,
    current: Current<PasswordFile>,
}

impl PasswordAuth {
    /// The checks `config` asks for: `None` when it lets everyone in (no password file, anonymous allowed).
    /// A password file that cannot be read or parsed is an error naming the file (and the line).
    pub fn from_config(config: &Config) -> Result<Option<PasswordAuth>, ConfigError> {
        let allow_anonymous = config.anonymous_allowed();
        let file = match config.password_file() {
            Some(path) => Some(Arc::new(FileSlot {
                path: Some(path.to_owned()),
                current: Current::new(load(path)?),
            })),
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
            file: Some(Arc::new(FileSlot {
                path: None,
                current: Current::new(file),
            })),
            allow_anonymous,
        }
    }

    /// Reads the password file again; from the next CONNECT on, its users are the ones that count. Clients
    /// already connected stay. A file that cannot be read or parsed changes nothing, and the error names it
    /// (and the line). Returns how many users the file lists, `None` when there is no file to read.
    pub fn reload(&self) -> Result<Option<usize>, ConfigError> {
        let Some(slot) = &self.file else {
            return Ok(None);
        };
        let Some(path) = &slot.path else {
            return Ok(None);
        };
        let fresh = load(path)?;
        let users = fresh.len();
        slot.current.replace(fresh);
        Ok(Some(users))
    }
}

/// Reads a password file; the error names the file, and the line when one is wrong.
pub fn load(path: &Path) -> Result<PasswordFile, ConfigError> {
    read_setting_file("password_file", path, PasswordFile::parse)
}

impl Hooks for PasswordAuth {
    /// A client without a user name: `allow_anonymous` decides (0x05 / 0x87 Not authorized when refused). A
    /// client with one: its password must match the file's line (0x04 / 0x86 Bad user name or password
    /// otherwise, as for an unknown user). The hash is checked on the blocking pool: at the default
    /// iteration count it takes milliseconds, which the session thread's other clients must not wait for.
    /// A user name taken from a verified TLS client certificate (`use_identity_as_username`) is let in
    /// without the file, as Mosquitto does: the certificate is the proof.
    fn authenticate<'a>(&'a self, connect: &'a ConnectInfo) -> HookFuture<'a, AuthDecision> {
        if connect.certificate_identity {
            return ready(AuthDecision::Allow);
        }
        let (Some(user), Some(file)) = (&connect.username, &self.file) else {
            return ready(match (&connect.username, self.allow_anonymous) {
                (None, true) => AuthDecision::Allow,
                _ => AuthDecision::Refuse(ReasonCode::NOT_AUTHORIZED),
            });
        };
        let file = file.current.get();
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reload_takes_the_new_file_and_a_damaged_one_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("passwords");
        let mut file = PasswordFile::default();
        file.set("alice", "one", 10);
        std::fs::write(&path, file.to_string()).unwrap();
        let config = Config {
            password_file: path.clone(),
            ..Config::default()
        };
        let auth = PasswordAuth::from_config(&config).unwrap().unwrap();
        let seen_by_connects = auth.clone();
        let check = |user: &str, password: &[u8]| {
            seen_by_connects
                .file
                .as_ref()
                .unwrap()
                .current
                .get()
                .check(user, password)
        };
        assert!(check("alice", b"one"));

        file.set("alice", "two", 10);
        file.set("bob", "three", 10);
        std::fs::write(&path, file.to_string()).unwrap();
        assert_eq!(auth.reload().unwrap(), Some(2));
        assert!(check("alice", b"two") && check("bob", b"three"));
        assert!(!check("alice", b"one"));

        std::fs::write(&path, "bob:plain\n").unwrap();
        let error = auth.reload().unwrap_err().to_string();
        assert!(error.contains("line 1"), "{error}");
        assert!(check("bob", b"three"), "the previous users stay");
    }
}
