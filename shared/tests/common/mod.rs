//! Paths shared by the integration tests (each test binary uses a part of them).
#![allow(dead_code)]

use std::path::PathBuf;

/// Committed public data (`testdata/`, sources and licences in its README).
pub fn material(relative: &str) -> PathBuf {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../testdata").join(relative);
    assert!(path.exists(), "{} is missing from testdata/", path.display());
    path
}

/// A committed golden fixture of this crate.
pub fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name)
}

/// Set `PREWARM_BLESS=1` to rewrite golden files after an intended format change.
pub fn blessing() -> bool {
    std::env::var_os("PREWARM_BLESS").is_some()
}
