//! Helpers shared by the integration tests: spead2 from PyPI, and network
//! namespaces for privileged tests. Not every test file uses every helper.
#![allow(dead_code)]

pub mod netns;

use std::path::PathBuf;

/// The Python with spead2: `SPEAD2_PYTHON`, or the venv that
/// `scripts/test.sh` creates at `.venv/`. Fails with what to do if absent.
pub fn python() -> PathBuf {
    let path = std::env::var_os("SPEAD2_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python"));
    assert!(
        path.exists(),
        "interop tests need a Python with spead2 from PyPI at {}: run scripts/test.sh \
         (it creates .venv) or set SPEAD2_PYTHON",
        path.display()
    );
    path
}

/// A helper script in `tests/interop/`.
pub fn script(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/interop")
        .join(name)
}
