//! The data directory: one profile per account.
//!
//! ```text
//! DATA_DIR/current                   name of the last profile logged in
//! DATA_DIR/profiles/NAME/profile.json  homeserver, user ID, device ID (public)
//! DATA_DIR/profiles/NAME/store.db      the SQLite store (secrets encrypted)
//! DATA_DIR/profiles/NAME/store.key     the store key (0600)
//! ```

use crate::error::ClientError;
use newt_sqlite::{SqliteStore, StoreKey};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// The public facts about a profile, readable without the store key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProfileInfo {
    /// Homeserver base URL.
    pub homeserver: String,
    /// Full user ID.
    pub user_id: String,
    /// Device ID, reused at the next login (kept across runs).
    pub device_id: String,
}

/// A profile directory.
#[derive(Debug, Clone)]
pub struct Profile {
    dir: PathBuf,
}

/// Creates `dir` (and parents) readable by the owner only.
pub(crate) fn create_private_dir(dir: &Path) -> Result<(), ClientError> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir).map_err(ClientError::io(dir))
}

/// A file-system-safe profile name for a user ID.
pub fn profile_name(user_id: &str) -> String {
    user_id
        .trim_start_matches('@')
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '.' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

impl Profile {
    /// The profile for `user_id` under `data_dir` (not created yet).
    pub fn for_user(data_dir: &Path, user_id: &str) -> Self {
        Self {
            dir: data_dir.join("profiles").join(profile_name(user_id)),
        }
    }

    /// The profile named in `DATA_DIR/current`.
    pub fn current(data_dir: &Path) -> Result<Self, ClientError> {
        let current = data_dir.join("current");
        let name = std::fs::read_to_string(&current)
            .map_err(|_| ClientError::NotLoggedIn(data_dir.display().to_string()))?;
        let dir = data_dir.join("profiles").join(name.trim());
        if !dir.join("profile.json").exists() {
            return Err(ClientError::NotLoggedIn(data_dir.display().to_string()));
        }
        Ok(Self { dir })
    }

    /// Finds a profile for this homeserver whose user ID or localpart is
    /// `user`, to reuse its device ID.
    pub fn find(data_dir: &Path, user: &str) -> Option<(Self, ProfileInfo)> {
        let entries = std::fs::read_dir(data_dir.join("profiles")).ok()?;
        entries.flatten().find_map(|entry| {
            let profile = Self { dir: entry.path() };
            let info = profile.info().ok()?;
            let localpart = info
                .user_id
                .trim_start_matches('@')
                .split(':')
                .next()
                .unwrap_or_default();
            (info.user_id == user || localpart == user.trim_start_matches('@'))
                .then_some((profile, info))
        })
    }

    /// The profile directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Reads `profile.json`.
    pub fn info(&self) -> Result<ProfileInfo, ClientError> {
        let path = self.dir.join("profile.json");
        let text = std::fs::read_to_string(&path).map_err(ClientError::io(&path))?;
        serde_json::from_str(&text)
            .map_err(|e| ClientError::Protocol(format!("{}: {e}", path.display())))
    }

    /// Writes `profile.json` and makes this the current profile.
    pub(crate) fn save_info(&self, data_dir: &Path, info: &ProfileInfo) -> Result<(), ClientError> {
        create_private_dir(&self.dir)?;
        let path = self.dir.join("profile.json");
        let text =
            serde_json::to_string_pretty(info).map_err(|e| ClientError::Protocol(e.to_string()))?;
        write_private(&path, text.as_bytes())?;
        let name = self
            .dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        write_private(&data_dir.join("current"), name.as_bytes())
    }

    /// Opens (or creates) the profile's store with its key file.
    pub fn open_store(&self) -> Result<SqliteStore, ClientError> {
        create_private_dir(&self.dir)?;
        let key = StoreKey::load_or_create(&self.dir.join("store.key"))?;
        Ok(SqliteStore::open(&self.dir.join("store.db"), key)?)
    }

    /// Moves this profile aside (a new device replaces it) so nothing in
    /// it is lost.
    pub(crate) fn retire(&self, reason: &str) -> Result<PathBuf, ClientError> {
        let stamp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let mut target = self.dir.clone();
        target.set_extension(format!("{reason}-{stamp}"));
        std::fs::rename(&self.dir, &target).map_err(ClientError::io(&self.dir))?;
        Ok(target)
    }
}

/// Writes a file readable by the owner only, atomically.
fn write_private(path: &Path, bytes: &[u8]) -> Result<(), ClientError> {
    use std::io::Write;
    let tmp = path.with_extension("tmp");
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(&tmp).map_err(ClientError::io(&tmp))?;
    file.write_all(bytes).map_err(ClientError::io(&tmp))?;
    file.sync_all().map_err(ClientError::io(&tmp))?;
    std::fs::rename(&tmp, path).map_err(ClientError::io(path))
}
