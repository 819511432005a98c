//! Keeps the on-chain registry in step with the config on start: lists or
//! updates each configured service (adding stake up to the configured
//! amount), and warns about services listed on chain but not configured
//! (it removes none: that is `zg-serving provider` operator's call).

use zg_chain::{ChainClient, ChainError, FineTuningTerms};
use zg_core::{B256, Prices, Service, ServiceKind, U256};

use crate::config::{Config, FineTuningConfig};

/// What the sync did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct SyncReport {
    pub listed: Vec<String>,
    pub unchanged: Vec<String>,
    /// Listed on chain, absent from the config: left alone.
    pub extra: Vec<String>,
    pub stake_added: U256,
}

/// The registry entry the config describes for service `index`.
pub(crate) fn desired(config: &Config, index: usize, chain: &ChainClient) -> Service {
    let s = &config.services[index];
    Service {
        provider: chain.wallet(),
        name: s.name.clone(),
        kind: s.kind.to_string(),
        url: config.public_url(),
        model: s.model.clone(),
        model_digest: s.model_digest,
        hardware: s.hardware.clone(),
        prices: s.ceilings(),
        verifiability: s.verifiability.clone(),
        signer: config.signer().address(),
        updated_at: 0,
        failed_at: 0,
    }
}

/// The registry entry of the fine-tuning service: its price per trained
/// token is the input ceiling; it has no output or cached price.
fn fine_tuning_service(
    config: &Config,
    ft: &FineTuningConfig,
    digest: B256,
    chain: &ChainClient,
) -> Service {
    Service {
        provider: chain.wallet(),
        name: ft.name.clone(),
        kind: ServiceKind::FineTuning.to_string(),
        url: config.public_url(),
        model: ft.model.clone(),
        model_digest: digest,
        hardware: ft.hardware.clone(),
        prices: Prices::new(ft.price_per_token, U256::ZERO).with_cached(U256::ZERO),
        verifiability: zg_core::verifiability::NONE.into(),
        signer: config.signer().address(),
        updated_at: 0,
        failed_at: 0,
    }
}

/// Lists the configured services (and the fine-tuning service, whose base
/// model has `fine_tuning_digest`, with its terms).
pub(crate) async fn sync(
    config: &Config,
    chain: &ChainClient,
    fine_tuning_digest: Option<B256>,
) -> Result<SyncReport, ChainError> {
    let provider = chain.wallet();
    let stake = chain.stake_of(provider).await?.stake;
    let min_stake = chain.min_stake().await?;
    let target = config.stake.max(min_stake);
    let mut to_add = target.saturating_sub(stake);
    let mut report = SyncReport {
        stake_added: to_add,
        ..Default::default()
    };
    for index in 0..config.services.len() {
        let want = desired(config, index, chain);
        let have = chain.service(provider, &want.name).await?;
        let same = have.as_ref().is_some_and(|h| {
            Service {
                updated_at: 0,
                failed_at: 0,
                provider: want.provider,
                ..h.clone()
            } == want
        });
        let failed_at = have.as_ref().map_or(0, |h| h.failed_at);
        if same && to_add.is_zero() && failed_at == 0 {
            report.unchanged.push(want.name);
            continue;
        }
        if failed_at != 0 {
            // A dispute found it guilty: the contract lists it again only
            // with at least the minimum stake sent fresh.
            tracing::warn!(
                service = %want.name, failed_at,
                "the service failed verification: listing it again with {min_stake} neuron of fresh stake"
            );
            to_add = to_add.max(min_stake);
            report.stake_added = report.stake_added.max(to_add);
        }
        chain.add_or_update_service(&want, to_add).await?;
        tracing::info!(service = %want.name, stake_added = %to_add, "service listed on chain");
        to_add = U256::ZERO;
        report.listed.push(want.name);
    }
    if let Some(ft) = &config.fine_tuning
        && let Some(digest) = fine_tuning_digest
    {
        let want = fine_tuning_service(config, ft, digest, chain);
        let have = chain.service(provider, &want.name).await?;
        let same = have.as_ref().is_some_and(|h| {
            h.failed_at == 0
                && Service {
                    updated_at: 0,
                    failed_at: 0,
                    provider: want.provider,
                    ..h.clone()
                } == want
        });
        if same && to_add.is_zero() {
            report.unchanged.push(want.name.clone());
        } else {
            chain.add_or_update_service(&want, to_add).await?;
            report.listed.push(want.name.clone());
        }
        let terms = FineTuningTerms {
            base_models: vec![digest],
            max_file_bytes: ft.max_file_bytes,
            max_epochs: ft.max_epochs,
        };
        if chain.fine_tuning_terms(provider, &ft.name).await? != terms {
            chain.set_fine_tuning_terms(&ft.name, &terms).await?;
            tracing::info!(service = %ft.name, "fine-tuning terms set on chain");
        }
    }
    let configured = |name: &str| {
        config.services.iter().any(|c| c.name == name)
            || config.fine_tuning.as_ref().is_some_and(|f| f.name == name)
    };
    let mut offset = 0;
    loop {
        let page = chain.services_of(provider, offset, 100).await?;
        let n = page.items.len() as u64;
        for s in page.items {
            if !configured(&s.name) {
                tracing::warn!(
                    service = %s.name,
                    "service is listed on chain but not in the config: users can still find it; remove it on chain if it is gone"
                );
                report.extra.push(s.name);
            }
        }
        offset += n;
        if n == 0 || offset >= page.total {
            break;
        }
    }
    Ok(report)
}

impl crate::Broker {
    /// Removes every configured service from the registry (users stop
    /// finding them); removing the provider's last service starts its
    /// stake's unbonding. Returns the names removed.
    pub async fn unregister(&self) -> Result<Vec<String>, ChainError> {
        let chain = self.chain.chain();
        let mut removed = Vec::new();
        let tuning = self.tuner.iter().map(|t| &t.config().name);
        for name in self.services.iter().map(|s| &s.config.name).chain(tuning) {
            if chain.service(chain.wallet(), name).await?.is_some() {
                chain.remove_service(name).await?;
                removed.push(name.clone());
            }
        }
        Ok(removed)
    }

    /// Returns the whole stake to the provider's wallet once nothing is
    /// listed, the unbonding period is over and no dispute is open.
    pub async fn withdraw_stake(&self) -> Result<U256, ChainError> {
        let chain = self.chain.chain();
        let stake = chain.stake_of(chain.wallet()).await?.stake;
        chain.withdraw_stake().await?;
        Ok(stake)
    }
}
