//! `harbormq passwd FILE USER`: creates or updates a user's line of a password file (`$7$` PBKDF2-SHA512, as
//! Mosquitto 2.x reads it), or deletes it with `-D`. The password is prompted for twice without echo, or read
//! from the first line of standard input with `--password-stdin` for scripts. The file is replaced atomically
//! and readable by its owner only.

use super::password_file::{valid_user_name, PasswordFile, DEFAULT_ITERATIONS};
use anyhow::{bail, Context as _};
use clap::Args;
use std::io::BufRead as _;
use std::path::{Path, PathBuf};

/// Flags of `harbormq passwd`.
#[derive(Args, Debug, Clone)]
pub struct PasswdArgs {
    /// The password file (created if it does not exist).
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
    /// The user to add, update or delete.
    #[arg(value_name = "USER")]
    pub user: String,
    /// Delete the user instead of setting a password.
    #[arg(short = 'D', long)]
    pub delete: bool,
    /// Read the password from the first line of standard input instead of prompting (for scripts).
    #[arg(long, conflicts_with = "delete")]
    pub password_stdin: bool,
    /// PBKDF2 iterations of the new line (Mosquitto writes 101).
    #[arg(long, value_name = "N", default_value_t = DEFAULT_ITERATIONS,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub iterations: u32,
}

/// Runs `harbormq passwd`; the error says what failed and where.
pub fn run(args: &PasswdArgs) -> anyhow::Result<()> {
    if !valid_user_name(&args.user) {
        bail!(
            "a user name must not be empty or contain `:` or a line break: {:?}",
            args.user
        );
    }
    let mut file = read(&args.file)?;
    if args.delete {
        if !file.remove(&args.user) {
            bail!("{}: no user {:?}", args.file.display(), args.user);
        }
    } else {
        let password = if args.password_stdin {
            password_from_stdin()?
        } else {
            password_from_prompt()?
        };
        if password.is_empty() {
            bail!("an empty password is refused");
        }
        file.set(&args.user, &password, args.iterations);
    }
    write(&args.file, &file)
}

/// The file's users, or none when it does not exist yet.
fn read(path: &Path) -> anyhow::Result<PasswordFile> {
    match std::fs::read_to_string(path) {
        Ok(text) => PasswordFile::parse(&text).with_context(|| format!("{}", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(PasswordFile::default()),
        Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
}

/// Replaces the file: written beside it, then renamed over it, so a reader never sees half a file.
fn write(path: &Path, file: &PasswordFile) -> anyhow::Result<()> {
    let name = path
        .file_name()
        .with_context(|| format!("{} is not a file name", path.display()))?;
    let mut temporary = name.to_owned();
    temporary.push(".tmp");
    let temporary = path.with_file_name(temporary);
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut out = options
        .open(&temporary)
        .with_context(|| format!("cannot write {}", temporary.display()))?;
    std::io::Write::write_all(&mut out, file.to_string().as_bytes())
        .and_then(|()| out.sync_all())
        .with_context(|| format!("cannot write {}", temporary.display()))?;
    std::fs::rename(&temporary, path).with_context(|| format!("cannot replace {}", path.display()))
}

fn password_from_stdin() -> anyhow::Result<String> {
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .context("cannot read the password from standard input")?;
    Ok(line.trim_end_matches(['\n', '\r']).to_owned())
}

fn password_from_prompt() -> anyhow::Result<String> {
    let first = rpassword::prompt_password("Password: ").context("cannot read the password")?;
    let again =
        rpassword::prompt_password("Reenter password: ").context("cannot read the password")?;
    if first != again {
        bail!("the two passwords differ");
    }
    Ok(first)
}
