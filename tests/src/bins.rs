//! Locating (and building once) the binaries under test.

use std::{path::PathBuf, process::Command, sync::OnceLock};

/// Paths of the two binaries, built by `cargo build` once per test process.
#[derive(Debug, Clone)]
pub struct Binaries {
    /// `aisemble-cp`.
    pub control_plane: PathBuf,
    /// `aisemble-agent`.
    pub agent: PathBuf,
}

/// The binaries of this workspace in the profile the tests were built with.
///
/// # Panics
/// When the build fails: every end-to-end test needs the binaries.
pub fn binaries() -> &'static Binaries {
    static BINARIES: OnceLock<Binaries> = OnceLock::new();
    BINARIES.get_or_init(|| {
        // target/<profile>/deps/<test binary> → target/<profile>; a bench binary such as
        // alertbench runs from target/<profile>/ itself.
        let exe = std::env::current_exe().expect("current test executable");
        let parent = exe.parent().expect("the executable's directory");
        let profile_dir = if parent.file_name().is_some_and(|n| n == "deps") {
            parent.parent().expect("target/<profile> directory")
        } else {
            parent
        }
        .to_owned();
        let release = profile_dir.file_name().is_some_and(|n| n == "release");
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut command = Command::new(cargo);
        // The same selection as `.ci/run`, so feature unification matches and this is a no-op there.
        command.args(["build", "--quiet", "--workspace", "--bins"]);
        if release {
            command.arg("--release");
        }
        if let Some(target) = profile_dir.parent() {
            command.env("CARGO_TARGET_DIR", target);
        }
        // `cargo test` gives the test process its package's variables. A build script that
        // reads one (ring's reads CARGO_MANIFEST_DIR) would see it changed, and cargo would
        // rebuild ring and everything above it, a minute of both cores, on every test run.
        for (name, _) in std::env::vars_os() {
            if name.to_str().is_some_and(is_package_variable) {
                command.env_remove(name);
            }
        }
        let status = command.status().expect("running cargo build");
        assert!(status.success(), "cargo build of the binaries failed");
        Binaries {
            control_plane: profile_dir.join("aisemble-cp"),
            agent: profile_dir.join("aisemble-agent"),
        }
    })
}

/// The variables cargo sets for a package's build and test processes, not for a user's shell.
fn is_package_variable(name: &str) -> bool {
    name == "OUT_DIR"
        || name.starts_with("CARGO_PKG_")
        || name.starts_with("CARGO_BIN_")
        || name.starts_with("CARGO_MANIFEST_")
        || matches!(
            name,
            "CARGO_CRATE_NAME"
                | "CARGO_PRIMARY_PACKAGE"
                | "CARGO_TARGET_TMPDIR"
                | "CARGO_RUSTC_CURRENT_DIR"
        )
}
