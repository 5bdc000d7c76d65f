//! `harbormq passwd` against real files: the lines it writes are read by Mosquitto 2.x (a real `mosquitto`
//! broker accepts `mosquitto_pub -u -P` with them and refuses a wrong password), and a file written by
//! `mosquitto_passwd` is read and updated by it. Mosquitto missing fails these tests under HARBORMQ_CI and
//! skips them elsewhere.

mod mosquitto;
mod needs;

use harbormq::auth::PasswordFile;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};

/// Runs `harbormq passwd ARGS`, with `stdin` on its standard input.
fn passwd(args: &[&str], stdin: &str) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_harbormq"))
        .arg("passwd")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // A refused user name ends the command before it reads its input: the pipe may be closed by then.
    let _ = child.stdin.take().unwrap().write_all(stdin.as_bytes());
    child.wait_with_output().unwrap()
}

fn read(path: &Path) -> PasswordFile {
    PasswordFile::parse(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// Whether a Mosquitto program can be run; if not, fails under HARBORMQ_CI and otherwise says why.
fn have(program: &str) -> bool {
    match Command::new(program).arg("--help").output() {
        Ok(_) => true,
        Err(e) => {
            needs::missing(&format!(
                "cannot run {program} ({e}); install it with `apt-get install mosquitto mosquitto-clients`"
            ));
            false
        }
    }
}

/// A Mosquitto broker that takes only the users of `password_file`.
fn mosquitto_with(password_file: &Path) -> Option<mosquitto::Mosquitto> {
    // Started as root, Mosquitto would run as user `mosquitto`, which cannot read a file readable by its
    // owner only: it is told to stay the user running the test.
    let me = Command::new("id").arg("-un").output().unwrap();
    let me = String::from_utf8_lossy(&me.stdout).trim().to_owned();
    mosquitto::start(&format!(
        "user {me}\nallow_anonymous false\npassword_file {}\n",
        password_file.display()
    ))
}

/// `mosquitto_pub -u USER -P PASSWORD` to the broker; whether it was accepted.
fn mosquitto_pub(broker: &mosquitto::Mosquitto, user: &str, password: &str) -> bool {
    Command::new("mosquitto_pub")
        .args(["-h", "127.0.0.1", "-p", &broker.port.to_string()])
        .args(["-u", user, "-P", password, "-t", "t", "-m", "x"])
        .output()
        .unwrap()
        .status
        .success()
}

#[test]
fn written_lines_are_7_lines_that_mosquitto_accepts() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("passwords");
    let file_arg = file.to_str().unwrap();
    let out = passwd(&[file_arg, "alice", "--password-stdin"], "s3cret pass\n");
    assert!(out.status.success(), "{out:?}");
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(text.starts_with("alice:$7$21000$"), "{text}");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&file).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "readable by its owner only");
    }
    assert!(read(&file).check("alice", b"s3cret pass"));
    if !have("mosquitto_pub") {
        return;
    }
    let Some(broker) = mosquitto_with(&file) else {
        return;
    };
    assert!(mosquitto_pub(&broker, "alice", "s3cret pass"));
    assert!(!mosquitto_pub(&broker, "alice", "s3cret"));
    assert!(!mosquitto_pub(&broker, "mallory", "s3cret pass"));
}

#[test]
fn a_mosquitto_made_file_is_read_updated_and_pruned() {
    if !have("mosquitto_passwd") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("passwords");
    let file_arg = file.to_str().unwrap();
    let made = Command::new("mosquitto_passwd")
        .args(["-c", "-b", file_arg, "alice", "from-mosquitto"])
        .status()
        .unwrap();
    assert!(made.success());
    let made = Command::new("mosquitto_passwd")
        .args(["-H", "sha512", "-b", file_arg, "bob", "old-style"])
        .status()
        .unwrap();
    assert!(made.success());
    let out = passwd(
        &[file_arg, "carol", "--password-stdin", "--iterations", "500"],
        "carols\n",
    );
    assert!(out.status.success(), "{out:?}");
    let users = read(&file);
    assert_eq!(users.len(), 3);
    assert!(users.check("alice", b"from-mosquitto"));
    assert!(users.check("bob", b"old-style"));
    assert!(users.check("carol", b"carols"));
    assert!(!users.check("carol", b"from-mosquitto"));

    let out = passwd(&[file_arg, "bob", "-D"], "");
    assert!(out.status.success(), "{out:?}");
    let users = read(&file);
    assert!(!users.contains("bob"));
    assert!(users.check("alice", b"from-mosquitto"));

    let out = passwd(&[file_arg, "bob", "-D"], "");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no user \"bob\""));
}

#[test]
fn a_damaged_file_is_named_with_its_line_and_left_as_it_was() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("passwords");
    let damaged = "# users\nalice:plain-text\n";
    std::fs::write(&file, damaged).unwrap();
    let out = passwd(&[file.to_str().unwrap(), "bob", "--password-stdin"], "x\n");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("passwords") && err.contains("line 2"), "{err}");
    assert_eq!(std::fs::read_to_string(&file).unwrap(), damaged);
}

#[test]
fn empty_passwords_and_unwritable_user_names_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("passwords");
    let file_arg = file.to_str().unwrap();
    assert!(!passwd(&[file_arg, "alice", "--password-stdin"], "\n")
        .status
        .success());
    assert!(!passwd(&[file_arg, "a:b", "--password-stdin"], "x\n")
        .status
        .success());
    assert!(!file.exists());
}
