//! The contents of a file that a reload (SIGHUP, the admin API) replaces while whoever uses them goes on with
//! the version it holds: password and ACL files, the TLS certificate; and reading such a file for a setting,
//! with errors that name the setting, the file and the line.

use crate::config::ConfigError;
use std::fmt::Display;
use std::path::Path;
use std::sync::{Arc, RwLock};

/// The latest contents; readers take an `Arc` and never wait on a reload for longer than a pointer swap.
#[derive(Debug)]
pub struct Current<T>(RwLock<Arc<T>>);

impl<T> Current<T> {
    /// Holds `value`.
    pub fn new(value: T) -> Self {
        Current(RwLock::new(Arc::new(value)))
    }

    /// The latest contents.
    pub fn get(&self) -> Arc<T> {
        match self.0.read() {
            Ok(value) => Arc::clone(&value),
            Err(poisoned) => Arc::clone(&poisoned.into_inner()),
        }
    }

    /// Makes `value` the latest contents.
    pub fn replace(&self, value: T) {
        match self.0.write() {
            Ok(mut current) => *current = Arc::new(value),
            Err(poisoned) => *poisoned.into_inner() = Arc::new(value),
        }
    }
}

/// Reads the file of setting `key` and parses it; the error names the key, the file and what `parse` says
/// (the line, for the files harbormq reads).
pub fn read_setting_file<T, E: Display>(
    key: &'static str,
    path: &Path,
    parse: impl FnOnce(&str) -> Result<T, E>,
) -> Result<T, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Invalid {
        key,
        reason: format!("cannot read {}: {e}", path.display()),
    })?;
    parse(&text).map_err(|e| ConfigError::Invalid {
        key,
        reason: format!("{}: {e}", path.display()),
    })
}
