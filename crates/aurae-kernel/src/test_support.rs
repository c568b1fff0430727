//! For unit tests that need what an unprivileged developer machine may lack
//! (root, a kernel feature): without it they say why and pass, but with the
//! environment variable `CI` set they fail, so CI never passes a test that
//! did not run. auraed's integration tests (`tests/common`) do the same.
//! Unit tests of aurae-images and auraed use it through the `test-support`
//! feature of their dev-dependency on this crate.

/// Call when `test` cannot run because of `why`: panics on CI, else prints
/// that the test is skipped. The caller then returns.
pub fn skip(test: &str, why: &str) {
    if std::env::var_os("CI").is_some() {
        panic!("{test}: {why}, and CI is set: CI must not skip it");
    }
    eprintln!("skipping {test}: {why}");
}

/// True when running as root; otherwise [`skip`]s `test` (needing root for `why`).
pub fn require_root(test: &str, why: &str) -> bool {
    if nix::unistd::geteuid().is_root() {
        return true;
    }
    skip(test, &format!("needs root ({why})"));
    false
}
