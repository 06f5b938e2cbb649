//! matrix-nio, an independent E2EE client from PyPI, as a test peer.
//!
//! Each call runs `python/nio_peer.py` (shipped in this crate) in a venv
//! with the pinned `matrix-nio[e2e]`, installed on first use.

use crate::synapse::{HarnessError, RegisteredUser, install_venv};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The matrix-nio release the harness installs (pinned).
pub const NIO_VERSION: &str = "0.26.0";

const SCRIPT: &str = include_str!("../python/nio_peer.py");

/// A nio device of a registered user, with its own store.
#[derive(Debug)]
pub struct NioPeer {
    python: PathBuf,
    script: PathBuf,
    homeserver: String,
    user: RegisteredUser,
    store: tempfile::TempDir,
}

impl NioPeer {
    /// Installs nio if needed and prepares a peer (it logs in on first use).
    pub fn new(homeserver: &str, user: RegisteredUser) -> Result<Self, HarnessError> {
        let python = install_venv(
            &format!("nio-{NIO_VERSION}"),
            &format!("matrix-nio[e2e]=={NIO_VERSION}"),
        )?;
        let store = tempfile::tempdir().map_err(|e| HarnessError::Failed(e.to_string()))?;
        let script = store.path().join("nio_peer.py");
        std::fs::write(&script, SCRIPT).map_err(|e| HarnessError::Failed(e.to_string()))?;
        Ok(Self {
            python,
            script,
            homeserver: homeserver.to_owned(),
            user,
            store,
        })
    }

    /// The user ID.
    pub fn user_id(&self) -> &str {
        &self.user.user_id
    }

    fn store_dir(&self) -> &Path {
        self.store.path()
    }

    fn run(&self, args: &[&str]) -> Result<Vec<Value>, HarnessError> {
        let output = Command::new(&self.python)
            .arg(&self.script)
            .arg(&self.homeserver)
            .arg(&self.user.localpart)
            .arg(&self.user.password)
            .arg(self.store_dir().join("nio"))
            .args(args)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| HarnessError::Failed(format!("running nio: {e}")))?;
        let stdout = String::from_utf8_lossy(&output.stdout);
        if !output.status.success() {
            return Err(HarnessError::Failed(format!(
                "nio {args:?} failed ({}):\n{stdout}\n{}",
                output.status,
                String::from_utf8_lossy(&output.stderr)
            )));
        }
        Ok(stdout
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect())
    }

    /// Joins a room it was invited to.
    pub fn join(&self, room_id: &str) -> Result<(), HarnessError> {
        self.run(&["join", room_id]).map(|_| ())
    }

    /// Sends an encrypted text message.
    pub fn send(&self, room_id: &str, text: &str) -> Result<(), HarnessError> {
        self.run(&["send", room_id, text]).map(|_| ())
    }

    /// Writes this device's room keys to `file` (nio's exporter).
    pub fn export_keys(&self, file: &Path, passphrase: &str) -> Result<(), HarnessError> {
        let file = file.to_string_lossy().into_owned();
        self.run(&["export", &file, passphrase]).map(|_| ())
    }

    /// Imports room keys from `file` (nio's importer), then reads like
    /// [`Self::read`].
    pub fn import_and_read(
        &self,
        file: &Path,
        passphrase: &str,
        room_id: &str,
        body: &str,
        timeout_secs: u32,
    ) -> Result<Vec<Value>, HarnessError> {
        let file = file.to_string_lossy().into_owned();
        self.run(&[
            "import-read",
            &file,
            passphrase,
            room_id,
            body,
            &timeout_secs.to_string(),
        ])
    }

    /// Syncs until a message with `body` arrives; returns every message
    /// line seen (`{event_id, sender, body, decrypted}`).
    pub fn read(
        &self,
        room_id: &str,
        body: &str,
        timeout_secs: u32,
    ) -> Result<Vec<Value>, HarnessError> {
        self.run(&["read", room_id, body, &timeout_secs.to_string()])
    }
}
