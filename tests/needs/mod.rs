//! What a test does when something it needs from the machine is missing (a peer broker, a browser, a
//! mount): in CI, where `.ci/run` installs everything and sets `HARBORMQ_CI`, that is a failure; elsewhere
//! the test says what is missing and skips.

/// Reports that `what` is missing: panics in CI, else prints why the test skips.
pub fn missing(what: &str) {
    if std::env::var_os("HARBORMQ_CI").is_some() {
        panic!("{what}; `.ci/run` installs it, so this test must not skip in CI");
    }
    eprintln!("skipped: {what}");
}
