//! Raw command-line arguments. Names, flags and `--json` fields are a
//! contract that scripts rely on: extend them, never rename them.

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
    /// Log this device out (the local store is kept aside).
    Logout,
    /// Show the logged-in user, device and keys.
    Whoami,
    /// Create a room (encrypted unless --unencrypted); prints its ID.
    CreateRoom(CreateRoomArgs),
    /// Invite a user to a room.
    Invite {
        /// Room ID.
        room: String,
        /// User ID.
        user: String,
    },
    /// Join a room by ID or alias.
    Join {
        /// Room ID or alias.
        room: String,
    },
    /// Leave a room.
    Leave {
        /// Room ID.
        room: String,
    },
    /// List rooms.
    Rooms,
    /// Send a message (TEXT, or stdin when absent); prints the event ID.
    Send {
        /// Room ID.
        room: String,
        /// The message.
        text: Option<String>,
    },
    /// Print new messages as they arrive.
    Listen(ListenArgs),
    /// Print past messages, oldest first.
    History {
        /// Room ID.
        room: String,
        /// How many events to fetch.
        #[arg(long, default_value_t = 20)]
        limit: u32,
    },
    /// List devices with their keys and trust (yours by default).
    Devices {
        /// User ID.
        user: Option<String>,
    },
    /// Block a device: it gets no room keys.
    Block(DeviceArg),
    /// Unblock a device.
    Unblock(DeviceArg),
    /// Mark a device verified after comparing its Ed25519 key out of band.
    Verify(DeviceArg),
    /// Room key export and import (the standard key file format).
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Explain why an event cannot be decrypted.
    Why {
        /// Room ID.
        room: String,
        /// Event ID.
        event_id: String,
    },
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

/// `newt create-room`
#[derive(Debug, Args)]
pub struct CreateRoomArgs {
    /// Room name.
    #[arg(long, value_name = "N")]
    pub name: Option<String>,
    /// Invite this user (repeatable).
    #[arg(long, value_name = "USER")]
    pub invite: Vec<String>,
    /// History visibility.
    #[arg(long, value_parser = ["shared", "invited", "joined", "world_readable"])]
    pub history_visibility: Option<String>,
    /// Rotate the room key after this many messages.
    #[arg(long, value_name = "N")]
    pub rotation_period_msgs: Option<u64>,
    /// Rotate the room key after this many milliseconds.
    #[arg(long, value_name = "N")]
    pub rotation_period_ms: Option<u64>,
    /// Create the room without encryption.
    #[arg(long)]
    pub unencrypted: bool,
}

/// `newt listen`
#[derive(Debug, Args)]
pub struct ListenArgs {
    /// Only this room.
    #[arg(long)]
    pub room: Option<String>,
    /// Stop after this many messages.
    #[arg(long, value_name = "N")]
    pub count: Option<usize>,
    /// Stop after this many seconds.
    #[arg(long, value_name = "SECS")]
    pub timeout: Option<u64>,
    /// Join rooms we are invited to.
    #[arg(long)]
    pub auto_join: bool,
}

/// A device: `DEVICE` (yours) or `USER DEVICE`.
#[derive(Debug, Args)]
pub struct DeviceArg {
    /// Device ID, or user ID followed by device ID.
    #[arg(num_args = 1..=2, required = true)]
    pub ids: Vec<String>,
}

/// `newt keys ...`
#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Write every room key to FILE, encrypted with a passphrase.
    Export(KeyFileArgs),
    /// Read room keys from FILE.
    Import(KeyFileArgs),
}

/// A key file and its passphrase.
#[derive(Debug, Args)]
pub struct KeyFileArgs {
    /// The key file.
    pub file: PathBuf,
    /// Read the passphrase from this file (first line); default: prompt.
    #[arg(long, value_name = "F")]
    pub passphrase_file: Option<PathBuf>,
}
