//! Raw command-line arguments. Names and flags here are a contract that
//! scripts rely on: extend them, never rename them.

use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;

/// newt: Matrix end-to-end encryption from the command line.
#[derive(Debug, Parser)]
#[command(name = "newt", version, about)]
pub struct Cli {
    /// Where profiles live (default: $XDG_DATA_HOME/newt or ~/.local/share/newt).
    #[arg(long, global = true, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Print one JSON object per line on stdout.
    #[arg(long, global = true)]
    pub json: bool,
    /// Trace each step on stderr (-v, -vv).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    #[command(subcommand)]
    pub command: Command,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Log a device in and publish its keys.
    Login(LoginArgs),
    /// Show the logged-in user, device and keys.
    Whoami,
    /// Start a throwaway local Synapse and show newt at work on it.
    Demo,
}

/// `newt login`
#[derive(Debug, Args)]
pub struct LoginArgs {
    /// Homeserver base URL, such as `https://matrix.example.org`.
    #[arg(long, value_name = "URL")]
    pub homeserver: String,
    /// Localpart or full user ID.
    #[arg(long, value_name = "NAME")]
    pub user: String,
    /// Read the password from this file (first line); default: stdin.
    #[arg(long, value_name = "F")]
    pub password_file: Option<PathBuf>,
    /// Display name for a new device.
    #[arg(long, value_name = "N")]
    pub device_name: Option<String>,
}
