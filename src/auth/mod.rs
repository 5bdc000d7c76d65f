//! Who may connect and what they may do: Mosquitto-compatible password files (`password_file`,
//! `allow_anonymous`), ACL files (`acl_file`) and an HTTP service (`http_auth_url`, `http_acl_url`), each
//! checked by hooks, and the `harbormq passwd` command that manages password files.

pub mod acl;
pub mod acl_file;
pub mod hooks;
pub mod http_backend;
pub mod passwd;
pub mod password_file;

pub use acl::AclAuth;
pub use acl_file::{AclFile, AclFileError};
pub use hooks::PasswordAuth;
pub use http_backend::{HttpBackend, HttpBackendConfig};
pub use password_file::{PasswordFile, PasswordFileError, PasswordHash};
