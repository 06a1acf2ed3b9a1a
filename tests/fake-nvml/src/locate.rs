//! Finding the fixtures and the built fake library from a test or a binary.

use std::path::{Path, PathBuf};

/// File name cargo gives the cdylib.
pub const CDYLIB_NAME: &str = "libfake_nvml.so";

/// The topology fixtures directory (`tests/topologies`).
pub fn topologies_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../topologies")
}

/// `tests/topologies/<name>`.
pub fn topology(name: &str) -> PathBuf {
    topologies_dir().join(name)
}

/// Path of the built `libfake_nvml.so`: `$FAKE_NVML_LIB` if set, else the
/// newest of the copies cargo leaves around the running executable. Test
/// binaries live in `target/<profile>/deps`, where `cargo test` refreshes
/// the cdylib without copying it up to `target/<profile>`, so the newest
/// copy is the one that matches the sources.
pub fn cdylib() -> Result<PathBuf, String> {
    if let Some(p) = std::env::var_os("FAKE_NVML_LIB").filter(|p| !p.is_empty()) {
        let p = PathBuf::from(p);
        return if p.is_file() { Ok(p) } else { Err(format!("FAKE_NVML_LIB={} does not exist", p.display())) };
    }
    let exe = std::env::current_exe().map_err(|e| format!("cannot find the running executable: {e}"))?;
    let dir = exe.parent().unwrap_or(Path::new("."));
    let mut candidates = vec![dir.join(CDYLIB_NAME), dir.join("deps").join(CDYLIB_NAME)];
    if let Some(up) = dir.parent() {
        candidates.push(up.join(CDYLIB_NAME));
    }
    let modified = |p: &PathBuf| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    candidates.iter().filter(|p| p.is_file()).max_by_key(|p| modified(p)).cloned().ok_or_else(|| {
        format!(
            "{CDYLIB_NAME} not found (looked at {}); run `cargo build --workspace` first",
            candidates.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ")
        )
    })
}
