//! Sending what the machine asks for.

use crate::client::{Client, now};
use crate::error::ClientError;
use crate::retry::RetryClass;
use newt_crypto::store::StoreTxn;
use newt_crypto::{HttpMethod, OutgoingRequest, RequestKind, ResponseError};
use reqwest::Method;

fn method(request: &OutgoingRequest) -> Method {
    match request.method() {
        HttpMethod::Post => Method::POST,
        HttpMethod::Put => Method::PUT,
        HttpMethod::Get => Method::GET,
    }
}

impl Client {
    /// Sends every request the machine has, one at a time and in order
    /// (DEV-09), each with the retry policy, and applies each response in
    /// its own transaction. A request the server refuses for good is
    /// dropped (a key upload excepted); one that could not get through is
    /// kept, unchanged, for the next call (OTK-08, TD-05). A response to a
    /// request the store no longer has was settled by another process on
    /// the store, and is not an error. Returns how many were answered.
    pub async fn process_outgoing(&mut self) -> Result<usize, ClientError> {
        let mut sent = 0;
        // Responses make new requests (claims make `m.dummy`s, queries of
        // our own device re-upload keys): a few rounds settle it.
        for _ in 0..8 {
            let requests = {
                let mut txn = self.store.begin()?;
                let requests = self.machine.outgoing_requests(&mut txn, now())?;
                txn.commit()?;
                requests
            };
            if requests.is_empty() {
                break;
            }
            for request in requests {
                self.send_one(&request).await?;
                sent += 1;
            }
        }
        Ok(sent)
    }

    async fn send_one(&mut self, request: &OutgoingRequest) -> Result<(), ClientError> {
        let result = self
            .http
            .send(method(request), request.path(), Some(request.body()))
            .await;
        match result {
            Ok(body) => {
                let mut txn = self.store.begin()?;
                let outcome = match self.machine.mark_request_as_sent(
                    &mut txn,
                    request.request_id(),
                    &body,
                    now(),
                ) {
                    // Settled already, by another process on this store
                    // (it read the same pending request) or by this one
                    // before: its effects are in the store.
                    Err(ResponseError::UnknownRequest(_)) => {
                        tracing::debug!(path = %request.path(), "request settled elsewhere");
                        return Ok(());
                    }
                    result => result?,
                };
                txn.commit()?;
                if let Some(query) = &outcome.query
                    && query.own_device_mismatch
                {
                    tracing::warn!("the server lists other keys for this device (TRK-10)");
                }
                self.to_device.extend(outcome.released);
                self.messages
                    .extend(crate::messages::collect(&[], &outcome.room_events));
                Ok(())
            }
            Err(err)
                if err.retry_class() == RetryClass::Permanent
                    && request.kind() != RequestKind::KeysUpload =>
            {
                tracing::warn!(path = %request.path(), error = %err, "request refused; dropping it");
                let mut txn = self.store.begin()?;
                self.machine
                    .mark_request_as_failed(&mut txn, request.request_id())?;
                txn.commit()?;
                Ok(())
            }
            Err(err) => Err(err.into()),
        }
    }
}
