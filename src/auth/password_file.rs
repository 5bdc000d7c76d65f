//! Password files in Mosquitto 2.x's format, one `user:hash` line per user: reading them (`$6$` salted
//! SHA-512 and `$7$` PBKDF2-HMAC-SHA512 lines, as `mosquitto_passwd` writes them), checking a password in
//! constant time, and writing `$7$` lines. Owns the format and the hashing, not where the file comes from.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use rand::RngCore as _;
use sha2::{Digest as _, Sha512};
use std::collections::BTreeMap;
use std::fmt;
use subtle::ConstantTimeEq as _;

/// PBKDF2 iterations of the lines `harbormq passwd` writes unless told otherwise. Mosquitto writes 101; this
/// is a tenth of the count recommended for PBKDF2-HMAC-SHA512 (OWASP, 2023), and checking a password then
/// takes about 12 ms of one core (measured on a 2-core virtual machine) where 101 iterations take 0.06 ms.
pub const DEFAULT_ITERATIONS: u32 = 21_000;

/// Salt bytes of a new line, as Mosquitto uses.
const SALT_BYTES: usize = 12;

/// The hash of one user's password.
#[derive(Clone, PartialEq, Eq)]
pub enum PasswordHash {
    /// `$6$salt$hash`: SHA-512 of the password followed by the salt (Mosquitto 1.x).
    Sha512 {
        /// The salt.
        salt: Vec<u8>,
        /// The 64-byte digest.
        hash: Vec<u8>,
    },
    /// `$7$iterations$salt$hash`: PBKDF2-HMAC-SHA512 (Mosquitto 2.x).
    Pbkdf2Sha512 {
        /// PBKDF2 iterations.
        iterations: u32,
        /// The salt.
        salt: Vec<u8>,
        /// The derived key, as long as Mosquitto writes it (64 bytes).
        hash: Vec<u8>,
    },
}

impl PasswordHash {
    /// A new `$7$` hash of `password` with a random salt.
    pub fn new(password: &str, iterations: u32) -> PasswordHash {
        let mut salt = vec![0; SALT_BYTES];
        rand::rng().fill_bytes(&mut salt);
        let mut hash = vec![0; 64];
        pbkdf2::pbkdf2_hmac::<Sha512>(password.as_bytes(), &salt, iterations, &mut hash);
        PasswordHash::Pbkdf2Sha512 {
            iterations,
            salt,
            hash,
        }
    }

    /// Whether `password` is the one hashed; the comparison takes the same time wherever the bytes differ.
    pub fn verify(&self, password: &[u8]) -> bool {
        let (expected, computed) = match self {
            PasswordHash::Sha512 { salt, hash } => {
                let mut digest = Sha512::new();
                digest.update(password);
                digest.update(salt);
                (hash, digest.finalize().to_vec())
            }
            PasswordHash::Pbkdf2Sha512 {
                iterations,
                salt,
                hash,
            } => {
                let mut out = vec![0; hash.len()];
                pbkdf2::pbkdf2_hmac::<Sha512>(password, salt, *iterations, &mut out);
                (hash, out)
            }
        };
        expected.len() == computed.len() && bool::from(expected.ct_eq(&computed))
    }

    /// Reads the part of a line after `user:`.
    fn parse(text: &str) -> Result<PasswordHash, String> {
        let decode = |field: &str, what: &str| {
            STANDARD
                .decode(field)
                .map_err(|e| format!("the {what} is not base64 ({e})"))
        };
        let fields: Vec<&str> = text.split('$').collect();
        match fields.as_slice() {
            ["", "6", salt, hash] => {
                let hash = decode(hash, "hash")?;
                if hash.len() != 64 {
                    return Err(format!("a $6$ hash has 64 bytes, not {}", hash.len()));
                }
                Ok(PasswordHash::Sha512 {
                    salt: decode(salt, "salt")?,
                    hash,
                })
            }
            ["", "7", iterations, salt, hash] => {
                let iterations = iterations
                    .parse::<u32>()
                    .ok()
                    .filter(|n| *n > 0)
                    .ok_or_else(|| format!("`{iterations}` is not an iteration count"))?;
                let hash = decode(hash, "hash")?;
                if hash.is_empty() || hash.len() > 64 {
                    return Err(format!("a $7$ hash has 1 to 64 bytes, not {}", hash.len()));
                }
                Ok(PasswordHash::Pbkdf2Sha512 {
                    iterations,
                    salt: decode(salt, "salt")?,
                    hash,
                })
            }
            _ => Err(
                "not a $6$ or $7$ hash (a plain-text password file must be hashed first, \
                      as `mosquitto_passwd -U` does)"
                    .to_owned(),
            ),
        }
    }
}

impl fmt::Display for PasswordHash {
    /// The form of a line after `user:`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PasswordHash::Sha512 { salt, hash } => {
                write!(f, "$6${}${}", STANDARD.encode(salt), STANDARD.encode(hash))
            }
            PasswordHash::Pbkdf2Sha512 {
                iterations,
                salt,
                hash,
            } => write!(
                f,
                "$7${iterations}${}${}",
                STANDARD.encode(salt),
                STANDARD.encode(hash)
            ),
        }
    }
}

impl fmt::Debug for PasswordHash {
    /// Names the kind only: hashes stay out of logs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PasswordHash::Sha512 { .. } => f.write_str("PasswordHash($6$)"),
            PasswordHash::Pbkdf2Sha512 { iterations, .. } => {
                write!(f, "PasswordHash($7$, {iterations} iterations)")
            }
        }
    }
}

/// A line of a password file that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {reason}")]
pub struct PasswordFileError {
    /// The line number, from 1.
    pub line: usize,
    /// What is wrong with it.
    pub reason: String,
}

/// The users of a password file and their hashes, in the order of their names.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PasswordFile {
    users: BTreeMap<String, PasswordHash>,
}

impl PasswordFile {
    /// Reads a file's text. Empty lines and lines starting with `#` are skipped, as Mosquitto does; a user
    /// named twice keeps the last line, as in Mosquitto.
    pub fn parse(text: &str) -> Result<PasswordFile, PasswordFileError> {
        let mut users = BTreeMap::new();
        for (i, raw) in text.lines().enumerate() {
            let line = raw.trim_end_matches('\r');
            if line.trim().is_empty() || line.starts_with('#') {
                continue;
            }
            let error = |reason: String| PasswordFileError {
                line: i + 1,
                reason,
            };
            let (user, hash) = line
                .split_once(':')
                .ok_or_else(|| error("no `:` between the user name and the hash".to_owned()))?;
            if user.is_empty() {
                return Err(error("an empty user name".to_owned()));
            }
            users.insert(user.to_owned(), PasswordHash::parse(hash).map_err(error)?);
        }
        Ok(PasswordFile { users })
    }

    /// Whether `user` is listed with `password`. An unknown user costs as much time as a known one with a
    /// wrong password, so a client cannot tell the two apart by timing.
    pub fn check(&self, user: &str, password: &[u8]) -> bool {
        match self.users.get(user) {
            Some(hash) => hash.verify(password),
            None => {
                let stand_in = PasswordHash::Pbkdf2Sha512 {
                    iterations: self.typical_iterations(),
                    salt: vec![0; SALT_BYTES],
                    hash: vec![0; 64],
                };
                let _ = stand_in.verify(password);
                false
            }
        }
    }

    /// The iteration count of the file's first `$7$` line (what checking a wrong user should cost).
    fn typical_iterations(&self) -> u32 {
        self.users
            .values()
            .find_map(|h| match h {
                PasswordHash::Pbkdf2Sha512 { iterations, .. } => Some(*iterations),
                PasswordHash::Sha512 { .. } => None,
            })
            .unwrap_or(1)
    }

    /// Sets `user`'s password (adds the user if new); returns whether the user existed.
    pub fn set(&mut self, user: &str, password: &str, iterations: u32) -> bool {
        self.users
            .insert(user.to_owned(), PasswordHash::new(password, iterations))
            .is_some()
    }

    /// Removes `user`; returns whether the user existed.
    pub fn remove(&mut self, user: &str) -> bool {
        self.users.remove(user).is_some()
    }

    /// Whether `user` is listed.
    pub fn contains(&self, user: &str) -> bool {
        self.users.contains_key(user)
    }

    /// How many users are listed.
    pub fn len(&self) -> usize {
        self.users.len()
    }

    /// Whether no user is listed.
    pub fn is_empty(&self) -> bool {
        self.users.is_empty()
    }
}

impl fmt::Display for PasswordFile {
    /// The file's text: one `user:hash` line per user.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (user, hash) in &self.users {
            writeln!(f, "{user}:{hash}")?;
        }
        Ok(())
    }
}

/// Whether a user name can be written to a password file: not empty, without `:` or a line break.
pub fn valid_user_name(user: &str) -> bool {
    !user.is_empty() && !user.contains([':', '\n', '\r'])
}

#[cfg(test)]
mod tests {
    use super::*;

    // Written by `mosquitto_passwd -b` (Mosquitto 2.0.11): alice / secret with the default $7$, bob / hunter2
    // with `-H sha512`.
    const MOSQUITTO_MADE: &str = "\
alice:$7$101$g6GRqXK51zSI/yZr$uVedt+Ty19HcJCK1r8+3ptij4N9KXr6c54K/auHly5yGQMNBUIxkPP7J48qeTpE5zOGxgqJr8GhmsJPFeWiowg==
bob:$6$JicKKDkn7wqmxg96$IllS66HN2QW7cIUVZMBHwhkmHPBVgQD+YzV6YOTrfqEzL4FWfD5nLU5MYl+W3ffAlte38ep3YJd+fCunxW9q6Q==
";

    #[test]
    fn mosquitto_made_lines_check_their_passwords() {
        let file = PasswordFile::parse(MOSQUITTO_MADE).unwrap();
        assert_eq!(file.len(), 2);
        assert!(file.check("alice", b"secret"));
        assert!(!file.check("alice", b"Secret"));
        assert!(file.check("bob", b"hunter2"));
        assert!(!file.check("bob", b"hunter"));
        assert!(!file.check("carol", b"secret"));
    }

    #[test]
    fn written_lines_are_7_lines_that_read_back() {
        let mut file = PasswordFile::default();
        assert!(!file.set("dave", "pa:ss word", 1000));
        let text = file.to_string();
        assert!(text.starts_with("dave:$7$1000$"), "{text}");
        let again = PasswordFile::parse(&text).unwrap();
        assert!(again.check("dave", b"pa:ss word"));
        assert!(!again.check("dave", b"pa:ss"));
        assert!(file.set("dave", "new", 1000));
        assert!(file.remove("dave"));
        assert!(!file.remove("dave"));
        assert!(file.is_empty());
    }

    #[test]
    fn each_salt_is_new() {
        let a = PasswordHash::new("same", 10).to_string();
        let b = PasswordHash::new("same", 10).to_string();
        assert_ne!(a, b);
    }

    #[test]
    fn comments_and_empty_lines_are_skipped_and_a_repeated_user_keeps_the_last_line() {
        let alice = MOSQUITTO_MADE.lines().next().unwrap();
        let text = format!("# users\n\n{}\r\n{alice}\n", alice.replace("g6GR", "AAAA"));
        let file = PasswordFile::parse(&text).unwrap();
        assert_eq!(file.len(), 1);
        assert!(file.check("alice", b"secret"));
    }

    #[test]
    fn a_bad_line_is_refused_with_its_number() {
        let bad = [
            ("alice\n", "no `:`"),
            (":$7$101$AAAA$AAAA\n", "empty user name"),
            ("alice:secret\n", "not a $6$ or $7$ hash"),
            ("alice:$7$x$AAAA$AAAA\n", "iteration count"),
            ("alice:$7$0$AAAA$AAAA\n", "iteration count"),
            ("alice:$7$101$AAAA$!!!!\n", "not base64"),
            ("alice:$6$AAAA$AAAA\n", "64 bytes"),
        ];
        for (text, reason) in bad {
            let err = PasswordFile::parse(&format!("# first\n{text}")).unwrap_err();
            assert_eq!(err.line, 2, "{text}");
            assert!(err.reason.contains(reason), "{text}: {}", err.reason);
        }
    }

    #[test]
    fn user_names_that_cannot_be_written_are_refused() {
        assert!(valid_user_name("alice"));
        for name in ["", "a:b", "a\nb"] {
            assert!(!valid_user_name(name), "{name:?}");
        }
    }

    #[test]
    fn hashes_stay_out_of_debug_output() {
        let file = PasswordFile::parse(MOSQUITTO_MADE).unwrap();
        let shown = format!("{file:?}");
        assert!(!shown.contains("uVedt"), "{shown}");
        assert!(shown.contains("101 iterations"), "{shown}");
    }
}
