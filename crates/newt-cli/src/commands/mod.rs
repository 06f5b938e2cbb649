//! One module per command.

pub mod demo;
pub mod login;
pub mod whoami;

use newt_client::Identity;
use serde_json::{Value, json};

/// The identity as printed by `whoami`, `login` and `demo`.
pub fn identity_json(id: &Identity) -> Value {
    json!({
        "homeserver": id.homeserver,
        "user_id": id.user_id,
        "device_id": id.device_id,
        "ed25519": id.ed25519,
        "curve25519": id.curve25519,
    })
}

/// The identity for people.
pub fn identity_human(id: &Identity) -> String {
    format!(
        "user:        {}\ndevice:      {}\nhomeserver:  {}\ned25519:     {}\ncurve25519:  {}",
        id.user_id, id.device_id, id.homeserver, id.ed25519, id.curve25519
    )
}
