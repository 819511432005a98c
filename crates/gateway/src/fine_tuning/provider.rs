//! The provider's fine-tuning API as the gateway calls it (routes and bodies
//! in `zg_core::fine_tuning`): count a file, start a job, read it, cancel
//! it. The adapter's download, with its ranges, lives with delivery.

use serde::{Serialize, de::DeserializeOwned};
use std::time::Duration;
use zg_client::pay::endpoint;
use zg_core::{
    B256, ErrorBody,
    fine_tuning::{CancelJob, Count, CountRequest, JobView, StartJob, routes},
};

/// Counting tokenizes the whole file and starting sends a transaction:
/// both may take a while on a busy provider.
const SLOW: Duration = Duration::from_secs(120);
const QUICK: Duration = Duration::from_secs(30);

/// Why a call to the provider did not give what was asked.
#[derive(Debug, thiserror::Error)]
pub(super) enum Fault {
    #[error("provider at {url} is unreachable: {error}")]
    Unreachable {
        url: String,
        error: String,
        /// The request never left (no connection): the provider saw nothing.
        unsent: bool,
    },
    #[error("provider at {url} refused ({status}): {message}")]
    Refused {
        url: String,
        status: u16,
        message: String,
    },
    #[error("provider at {url} answered what is not {what}: {error}")]
    Garbled {
        url: String,
        what: &'static str,
        error: String,
    },
}

impl Fault {
    /// The provider said no to the request itself (not down, not broken).
    pub(super) fn is_refusal(&self) -> bool {
        matches!(self, Self::Refused { status, .. } if (400..500).contains(status))
    }

    /// The provider may have acted on the request without its answer
    /// arriving (cut off, timed out, or not what was asked).
    pub(super) fn may_have_acted(&self) -> bool {
        match self {
            Self::Unreachable { unsent, .. } => !unsent,
            Self::Refused { .. } => false,
            Self::Garbled { .. } => true,
        }
    }

    pub(super) fn is_not_found(&self) -> bool {
        matches!(self, Self::Refused { status: 404, .. })
    }
}

async fn call<T: DeserializeOwned>(
    request: reqwest::RequestBuilder,
    url: &str,
    what: &'static str,
) -> Result<T, Fault> {
    let response = request.send().await.map_err(|e| Fault::Unreachable {
        url: url.to_owned(),
        unsent: e.is_connect(),
        error: e.to_string(),
    })?;
    let status = response.status().as_u16();
    let body = response.bytes().await.map_err(|e| Fault::Unreachable {
        url: url.to_owned(),
        error: format!("the answer broke off: {e}"),
        unsent: false,
    })?;
    if !(200..300).contains(&status) {
        let message = serde_json::from_slice::<ErrorBody>(&body).map_or_else(
            |_| String::from_utf8_lossy(&body).chars().take(300).collect(),
            |b| b.error.message,
        );
        return Err(Fault::Refused {
            url: url.to_owned(),
            status,
            message,
        });
    }
    serde_json::from_slice(&body).map_err(|e| Fault::Garbled {
        url: url.to_owned(),
        what,
        error: e.to_string(),
    })
}

async fn post<B: Serialize, T: DeserializeOwned>(
    http: &reqwest::Client,
    base: &str,
    path: &str,
    body: &B,
    what: &'static str,
) -> Result<T, Fault> {
    let url = endpoint(base, path);
    call(http.post(&url).timeout(SLOW).json(body), &url, what).await
}

pub(super) async fn count(
    http: &reqwest::Client,
    base: &str,
    request: &CountRequest,
) -> Result<Count, Fault> {
    post(http, base, routes::COUNT, request, "a token count").await
}

pub(super) async fn start(
    http: &reqwest::Client,
    base: &str,
    request: &StartJob,
) -> Result<JobView, Fault> {
    post(http, base, routes::JOBS, request, "a fine-tuning job").await
}

pub(super) async fn cancel(
    http: &reqwest::Client,
    base: &str,
    id: &B256,
    request: &CancelJob,
) -> Result<serde_json::Value, Fault> {
    post(http, base, &routes::cancel(id), request, "JSON").await
}

pub(super) async fn view(http: &reqwest::Client, base: &str, id: &B256) -> Result<JobView, Fault> {
    let url = endpoint(base, &routes::job(id));
    call(http.get(&url).timeout(QUICK), &url, "a fine-tuning job").await
}
