//! HTTP transport: every request goes through [`HttpClient::send`], which
//! applies the retry policy. Bodies are never logged.

use crate::retry::{RetryClass, RetryPolicy, classify};
use reqwest::Method;
use std::time::{Duration, SystemTime};

/// A request that failed for good.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HttpError {
    /// The server could not be reached (after retries).
    #[error("cannot reach {url}: {detail}")]
    Network {
        /// The URL tried.
        url: String,
        /// What failed.
        detail: String,
    },
    /// The server answered with an error (final, or after retries).
    #[error("{method} {path}: HTTP {status}{}: {message}", errcode.as_deref().map(|c| format!(" {c}")).unwrap_or_default())]
    Status {
        /// Request method.
        method: String,
        /// Request path.
        path: String,
        /// HTTP status.
        status: u16,
        /// Matrix `errcode`, if the body had one.
        errcode: Option<String>,
        /// Matrix `error`, or the raw body start.
        message: String,
        /// Whether a later attempt might succeed.
        retry: RetryClass,
    },
    /// A 2xx response whose body is not the expected JSON.
    #[error("{path}: unexpected response: {detail}")]
    BadResponse {
        /// Request path.
        path: String,
        /// The parse error.
        detail: String,
    },
}

impl HttpError {
    /// The Matrix error code, if the server sent one.
    pub fn errcode(&self) -> Option<&str> {
        match self {
            Self::Status { errcode, .. } => errcode.as_deref(),
            _ => None,
        }
    }

    /// Whether a later attempt might succeed.
    pub fn retry_class(&self) -> RetryClass {
        match self {
            Self::Network { .. } => RetryClass::Network,
            Self::Status { retry, .. } => *retry,
            Self::BadResponse { .. } => RetryClass::Permanent,
        }
    }
}

/// A homeserver connection with an optional access token.
#[derive(Debug, Clone)]
pub struct HttpClient {
    client: reqwest::Client,
    base: String,
    token: Option<String>,
    policy: RetryPolicy,
}

impl HttpClient {
    /// A client for the homeserver at `base` (e.g. `http://127.0.0.1:8008`).
    pub fn new(base: &str, policy: RetryPolicy) -> Result<Self, HttpError> {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(120))
            .connect_timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| HttpError::Network {
                url: base.to_owned(),
                detail: e.to_string(),
            })?;
        Ok(Self {
            client,
            base: base.trim_end_matches('/').to_owned(),
            token: None,
            policy,
        })
    }

    /// Uses `token` for every later request.
    pub fn set_token(&mut self, token: Option<String>) {
        self.token = token;
    }

    /// The homeserver base URL.
    pub fn base_url(&self) -> &str {
        &self.base
    }

    /// Sends a request, retrying per the policy with the identical body,
    /// and returns the 2xx body.
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<&str>,
    ) -> Result<String, HttpError> {
        let url = format!("{}{}", self.base, path);
        let mut attempt = 0;
        loop {
            attempt += 1;
            let err = match self.attempt(&method, &url, path, body).await {
                Ok(text) => return Ok(text),
                Err(err) => err,
            };
            match self.policy.delay(attempt, err.retry_class()) {
                Some(wait) => {
                    tracing::debug!(%method, path, attempt, ?wait, error = %err, "retrying");
                    tokio::time::sleep(wait).await;
                }
                None => return Err(err),
            }
        }
    }

    /// Sends and parses the JSON response.
    pub async fn send_json<T: serde::de::DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&str>,
    ) -> Result<T, HttpError> {
        let text = self.send(method, path, body).await?;
        serde_json::from_str(&text).map_err(|e| HttpError::BadResponse {
            path: strip_query(path),
            detail: e.to_string(),
        })
    }

    async fn attempt(
        &self,
        method: &Method,
        url: &str,
        path: &str,
        body: Option<&str>,
    ) -> Result<String, HttpError> {
        let mut request = self.client.request(method.clone(), url);
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body.to_owned());
        }
        let response = request.send().await.map_err(|e| HttpError::Network {
            url: strip_query(url),
            detail: error_chain(&e),
        })?;
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let bytes = response.bytes().await.map_err(|e| HttpError::Network {
            url: strip_query(url),
            detail: error_chain(&e),
        })?;
        tracing::debug!(%method, path = %strip_query(path), status, "response");
        if (200..300).contains(&status) {
            return String::from_utf8(bytes.to_vec()).map_err(|e| HttpError::BadResponse {
                path: strip_query(path),
                detail: e.to_string(),
            });
        }
        let json: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or_default();
        Err(HttpError::Status {
            method: method.to_string(),
            path: strip_query(path),
            status,
            errcode: json
                .get("errcode")
                .and_then(|v| v.as_str())
                .map(str::to_owned),
            message: json
                .get("error")
                .and_then(|v| v.as_str())
                .map(str::to_owned)
                .unwrap_or_else(|| {
                    String::from_utf8_lossy(&bytes[..bytes.len().min(200)]).into_owned()
                }),
            retry: classify(status, retry_after.as_deref(), &bytes, SystemTime::now()),
        })
    }
}

/// Query strings can carry tokens (`since`); keep them out of errors.
fn strip_query(url: &str) -> String {
    url.split('?').next().unwrap_or(url).to_owned()
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}
