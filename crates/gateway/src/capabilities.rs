//! What each service can do beyond a plain answer, as its broker lists it in
//! `/v1/models` (`capabilities`, names of [`zg_core::capability`]), read
//! only when a request needs one and kept as long as the registry listing.
//! A broker that does not answer counts as listing nothing for a while.

use serde_json::Value;
use std::{
    collections::{HashMap, HashSet},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};
use zg_core::{Service, wire::routes};

/// Service name to capability names, for one broker.
type Listing = Arc<HashMap<String, Vec<String>>>;

/// How long a broker that did not answer is taken at that.
const FAILED_FOR: Duration = Duration::from_secs(5);
const TIMEOUT: Duration = Duration::from_secs(5);

/// Every broker's listing, by its URL.
pub(crate) struct Capabilities {
    refresh: Duration,
    cache: Mutex<HashMap<String, (Instant, Listing)>>,
}

impl Capabilities {
    pub(crate) fn new(refresh: Duration) -> Self {
        Self {
            refresh,
            cache: Mutex::default(),
        }
    }

    fn fresh(&self, url: &str) -> Option<Listing> {
        let cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        cache
            .get(url)
            .filter(|(until, _)| *until > Instant::now())
            .map(|(_, listing)| listing.clone())
    }

    /// The services of `candidates` that list every capability of `needed`.
    pub(crate) async fn having(
        &self,
        http: &reqwest::Client,
        candidates: Vec<Service>,
        needed: &[&str],
    ) -> Vec<Service> {
        if needed.is_empty() {
            return candidates;
        }
        let stale: HashSet<&str> = candidates
            .iter()
            .map(|s| s.url.as_str())
            .filter(|url| self.fresh(url).is_none())
            .collect();
        let mut reads = tokio::task::JoinSet::new();
        for url in stale {
            let (http, url) = (http.clone(), url.to_owned());
            reads.spawn(async move {
                let listing = read(&http, &url).await;
                (url, listing)
            });
        }
        while let Some(Ok((url, listing))) = reads.join_next().await {
            let until = Instant::now()
                + match listing {
                    Ok(_) => self.refresh,
                    Err(_) => FAILED_FOR,
                };
            let listing = listing.unwrap_or_else(|e| {
                tracing::warn!(%url, error = %e, "could not read the broker's capabilities");
                Listing::default()
            });
            self.cache
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(url, (until, listing));
        }
        candidates
            .into_iter()
            .filter(|s| {
                let listing = self.fresh(&s.url).unwrap_or_default();
                let has = listing.get(&s.name).map(Vec::as_slice).unwrap_or(&[]);
                needed.iter().all(|n| has.iter().any(|h| h == n))
            })
            .collect()
    }
}

/// One broker's `/v1/models`, as service name to capabilities.
async fn read(http: &reqwest::Client, url: &str) -> Result<Listing, String> {
    let response = http
        .get(zg_client::pay::endpoint(url, routes::MODELS))
        .timeout(TIMEOUT)
        .send()
        .await
        .map_err(|e| e.to_string())?;
    if !response.status().is_success() {
        return Err(format!("status {}", response.status()));
    }
    let body: Value = response.json().await.map_err(|e| e.to_string())?;
    let listing = body
        .get("data")
        .and_then(Value::as_array)
        .map(|models| {
            models
                .iter()
                .filter_map(|m| {
                    let id = m.get("id")?.as_str()?.to_owned();
                    let caps = m
                        .get("capabilities")?
                        .as_array()?
                        .iter()
                        .filter_map(|c| c.as_str().map(str::to_owned))
                        .collect();
                    Some((id, caps))
                })
                .collect()
        })
        .unwrap_or_default();
    Ok(Arc::new(listing))
}
