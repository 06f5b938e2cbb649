//! Validated configuration built from the raw arguments and environment.

use std::path::PathBuf;

/// Settings every command shares.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where profiles live.
    pub data_dir: PathBuf,
    /// JSON lines instead of human output.
    pub json: bool,
}

/// The default data directory: `$XDG_DATA_HOME/newt`, else
/// `~/.local/share/newt`.
pub fn default_data_dir() -> anyhow::Result<PathBuf> {
    if let Some(dir) = std::env::var_os("XDG_DATA_HOME").filter(|d| !d.is_empty()) {
        return Ok(PathBuf::from(dir).join("newt"));
    }
    let home = std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .ok_or_else(|| anyhow::anyhow!("neither XDG_DATA_HOME nor HOME is set; pass --data-dir"))?;
    Ok(PathBuf::from(home).join(".local/share/newt"))
}

impl Config {
    /// Builds the config from the global flags.
    pub fn new(data_dir: Option<PathBuf>, json: bool) -> anyhow::Result<Self> {
        let data_dir = match data_dir {
            Some(dir) => dir,
            None => default_data_dir()?,
        };
        Ok(Self { data_dir, json })
    }
}
