//! Requests the machine asks the driver to send, and their IDs.

use crate::store::{PendingKind, PendingRequest, PendingUpload};
use rand::RngCore;
use std::sync::Arc;

/// Makes a fresh, unguessable ID for requests and transactions.
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

/// What a request is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum RequestKind {
    /// `POST /keys/upload`
    KeysUpload,
    /// `POST /keys/query`
    KeysQuery,
    /// `POST /keys/claim`
    KeysClaim,
    /// `PUT /sendToDevice/{type}/{txnId}`
    ToDevice,
}

/// A request for the driver to send. Report its response with
/// [`crate::OlmMachine::mark_request_as_sent`] under the same ID, or give
/// up with [`crate::OlmMachine::mark_request_as_failed`]. Retries must
/// resend the identical body to the identical path (OTK-08, TD-02).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutgoingRequest {
    request_id: String,
    kind: RequestKind,
    method: HttpMethod,
    path: String,
    /// Shared with the machine's copy of queued bodies.
    body: Arc<String>,
}

const V3: &str = "/_matrix/client/v3";

impl OutgoingRequest {
    pub(crate) fn upload(upload: &PendingUpload) -> Self {
        Self {
            request_id: upload.request_id.clone(),
            kind: RequestKind::KeysUpload,
            method: HttpMethod::Post,
            path: format!("{V3}/keys/upload"),
            body: Arc::new(upload.body.clone()),
        }
    }

    /// `held`: the body, when the caller has it and `request`'s may be
    /// empty.
    pub(crate) fn pending(request: PendingRequest, held: Option<Arc<String>>) -> Self {
        let (kind, method, path) = match &request.kind {
            PendingKind::KeysQuery { .. } => (
                RequestKind::KeysQuery,
                HttpMethod::Post,
                format!("{V3}/keys/query"),
            ),
            PendingKind::KeysClaim { .. } => (
                RequestKind::KeysClaim,
                HttpMethod::Post,
                format!("{V3}/keys/claim"),
            ),
            PendingKind::ToDevice {
                event_type, txn_id, ..
            } => (
                RequestKind::ToDevice,
                HttpMethod::Put,
                format!(
                    "{V3}/sendToDevice/{}/{}",
                    path_segment(event_type),
                    path_segment(txn_id)
                ),
            ),
            PendingKind::RoomKey { txn_id, .. } => (
                RequestKind::ToDevice,
                HttpMethod::Put,
                format!(
                    "{V3}/sendToDevice/{}/{}",
                    path_segment(crate::olm::encrypt::ENCRYPTED_EVENT_TYPE),
                    path_segment(txn_id)
                ),
            ),
        };
        Self {
            request_id: request.request_id,
            kind,
            method,
            path,
            body: held.unwrap_or(request.body),
        }
    }

    /// The ID to report the response under.
    pub fn request_id(&self) -> &str {
        &self.request_id
    }

    /// What the request is for.
    pub fn kind(&self) -> RequestKind {
        self.kind
    }

    /// The HTTP method.
    pub fn method(&self) -> HttpMethod {
        self.method
    }

    /// The path below the homeserver's base URL.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The JSON body.
    pub fn body(&self) -> &str {
        &self.body
    }
}

/// Percent-encodes one path segment.
fn path_segment(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}
