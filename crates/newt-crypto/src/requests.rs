//! Requests the machine asks the driver to send, and their IDs.

use rand::RngCore;

/// Makes a fresh, unguessable request ID.
pub(crate) fn new_request_id() -> String {
    let mut bytes = [0u8; 12];
    rand::rng().fill_bytes(&mut bytes);
    crate::b64::encode(bytes).replace(['+', '/'], "_")
}

/// HTTP methods the machine uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HttpMethod {
    /// `POST`
    Post,
    /// `PUT`
    Put,
    /// `GET`
    Get,
}

/// A request for the driver to send. Report its response with
/// [`crate::OlmMachine::mark_request_as_sent`] under the same ID. Retries
/// must resend the identical body (OTK-08).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum OutgoingRequest {
    /// `POST /_matrix/client/v3/keys/upload`
    KeysUpload {
        /// ID to report the response under.
        request_id: String,
        /// The exact JSON body, persisted before it was handed out (DEV-08).
        body: String,
    },
}

impl OutgoingRequest {
    /// The ID to report the response under.
    pub fn request_id(&self) -> &str {
        match self {
            Self::KeysUpload { request_id, .. } => request_id,
        }
    }

    /// The HTTP method.
    pub fn method(&self) -> HttpMethod {
        match self {
            Self::KeysUpload { .. } => HttpMethod::Post,
        }
    }

    /// The path below the homeserver's base URL.
    pub fn path(&self) -> String {
        match self {
            Self::KeysUpload { .. } => "/_matrix/client/v3/keys/upload".to_owned(),
        }
    }

    /// The JSON body.
    pub fn body(&self) -> &str {
        match self {
            Self::KeysUpload { body, .. } => body,
        }
    }
}
