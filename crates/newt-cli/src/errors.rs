//! Errors for people: what happened and what to do, in one line.

use newt_client::ClientError;
use newt_client::http::HttpError;

fn advice(err: &ClientError) -> Option<&'static str> {
    match err {
        ClientError::Http(HttpError::Status {
            path,
            errcode,
            status,
            ..
        }) => {
            let code = errcode.as_deref().unwrap_or_default();
            if path.ends_with("/login") {
                return (code == "M_FORBIDDEN").then_some("check the user name and password");
            }
            if path.contains("/rooms/") || path.contains("/join/") {
                return match (code, status) {
                    ("M_FORBIDDEN", _) | ("M_NOT_FOUND", _) | (_, 404) => {
                        Some("you are not in that room or it does not exist; see `newt rooms`")
                    }
                    _ => None,
                };
            }
            (code == "M_UNKNOWN_TOKEN").then_some("the session ended; run `newt login` again")
        }
        ClientError::Http(HttpError::Network { .. }) => {
            Some("check the homeserver URL and your network")
        }
        ClientError::StoreOpen(newt_client::newt_sqlite::OpenError::WrongKey(_)) => {
            Some("the store key file does not match this store; restore the right store.key")
        }
        ClientError::StoreOpen(newt_client::newt_sqlite::OpenError::Corrupt { .. }) => Some(
            "the store file is damaged; it was left untouched, restore it from a backup or log in with a new --data-dir",
        ),
        _ => None,
    }
}

/// Adds advice to a client error.
pub fn explain(err: ClientError) -> anyhow::Error {
    match advice(&err) {
        Some(advice) => anyhow::anyhow!("{err} ({advice})"),
        None => anyhow::Error::new(err),
    }
}
