//! Human output by default; with `--json`, one JSON object per line.

use serde_json::Value;
use std::io::Write;

/// Where command results go.
#[derive(Debug, Clone, Copy)]
pub struct Output {
    json: bool,
}

impl Output {
    /// Output in the chosen mode.
    pub fn new(json: bool) -> Self {
        Self { json }
    }

    /// Prints one result: `human` in human mode, `json` as a line in JSON
    /// mode.
    pub fn emit(&self, human: &str, json: &Value) -> std::io::Result<()> {
        let mut out = std::io::stdout().lock();
        if self.json {
            writeln!(out, "{json}")
        } else {
            writeln!(out, "{human}")
        }
    }

    /// Whether output is JSON lines.
    pub fn is_json(&self) -> bool {
        self.json
    }

    /// A progress or narration line: stderr in human mode, silent in JSON
    /// mode so stdout stays machine-readable.
    pub fn step(&self, line: &str) {
        if !self.json {
            eprintln!("{line}");
        }
    }
}
