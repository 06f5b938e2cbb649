//! Errors for people: what happened and what to do, in one line.

use newt_client::ClientError;
use newt_client::http::HttpError;

/// Adds advice to a client error.
pub fn explain(err: ClientError) -> anyhow::Error {
    let advice = match &err {
        ClientError::Http(HttpError::Status {
            errcode: Some(code),
            ..
        }) if code == "M_FORBIDDEN" => Some("check the user name and password"),
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
    };
    match advice {
        Some(advice) => anyhow::anyhow!("{err} ({advice})"),
        None => anyhow::Error::new(err),
    }
}
