//! Who may connect: Mosquitto-compatible password files (`password_file`, `allow_anonymous`), checked by an
//! authenticate hook, and the `harbormq passwd` command that manages the files.

pub mod hooks;
pub mod passwd;
pub mod password_file;

pub use hooks::PasswordAuth;
pub use password_file::{PasswordFile, PasswordFileError, PasswordHash};
