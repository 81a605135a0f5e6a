//! Configuration: TOML file → serde structs → validated, compiled [`Snapshot`].
//!
//! `load` runs on the main thread before workers start (live reload is not built yet). Workers
//! only ever see an `Arc<Snapshot>`. Errors are [`ConfigError`]s that name the
//! TOML key path and line.

mod compile;
mod error;
mod file;
mod route_table;
mod snapshot;

pub use compile::{compile, compile_in, compile_with};
pub use error::ConfigError;
pub use route_table::{MethodSet, PathPattern, RouteMatch, RouteTable};
pub use snapshot::*;

use std::path::Path;

/// Reads and compiles the file at `path` as generation `generation`; relative paths in it are
/// relative to its directory.
pub fn load(path: &Path, generation: u64) -> Result<Snapshot, ConfigError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| ConfigError::new("", None, format!("cannot read {}: {e}", path.display())))?;
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    compile_in(&text, generation, dir)
}
