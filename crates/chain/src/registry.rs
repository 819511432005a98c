//! The service registry: listing, updating and removing services, the
//! provider's stake, and the paged service views.

use crate::{ChainClient, ChainError, Outcome, Page, bindings::ZgServing};
use alloy::primitives::{Address, U256};
use zg_core::{Prices, Service};

/// A provider's stake, how many services it lists, the disputes open
/// against it and, once its last service is gone, when the stake may leave.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProviderStake {
    pub stake: U256,
    pub services: u64,
    pub open_disputes: u64,
    /// Unix time after which `withdraw_stake` returns it; 0 while bonded.
    pub unbond_at: u64,
}

impl From<ZgServing::Service> for Service {
    fn from(s: ZgServing::Service) -> Self {
        Service {
            provider: s.provider,
            name: s.name,
            kind: s.kind,
            url: s.url,
            model: s.model,
            model_digest: s.modelDigest,
            hardware: s.hardware,
            prices: Prices {
                input: s.inputPrice,
                output: s.outputPrice,
                cached: s.cachedInputPrice,
            },
            verifiability: s.verifiability,
            signer: s.signer,
            updated_at: s.updatedAt,
            failed_at: s.failedAt,
        }
    }
}

fn params(s: &Service) -> ZgServing::ServiceParams {
    ZgServing::ServiceParams {
        name: s.name.clone(),
        kind: s.kind.clone(),
        url: s.url.clone(),
        model: s.model.clone(),
        modelDigest: s.model_digest,
        hardware: s.hardware.clone(),
        inputPrice: s.prices.input,
        outputPrice: s.prices.output,
        cachedInputPrice: s.prices.cached,
        verifiability: s.verifiability.clone(),
        signer: s.signer,
    }
}

fn page(p: ZgServing::servicesReturn) -> Page<Service> {
    Page {
        items: p.page.into_iter().map(Into::into).collect(),
        total: p.total.saturating_to(),
    }
}

impl ChainClient {
    /// Lists `service` under this wallet, or updates the one of the same name,
    /// adding `stake` neuron to the provider's stake. `service.provider` and
    /// `service.updated_at` are ignored: the contract sets them.
    pub async fn add_or_update_service(
        &self,
        service: &Service,
        stake: U256,
    ) -> Result<Outcome, ChainError> {
        let action = format!("listing service {:?}", service.name);
        self.send(
            &action,
            self.contract()
                .addOrUpdateService(params(service))
                .value(stake),
        )
        .await
    }

    /// Removes this wallet's service `name`; removing the last one starts the
    /// stake's unbonding (`withdraw_stake` after the unbonding period).
    pub async fn remove_service(&self, name: &str) -> Result<Outcome, ChainError> {
        let action = format!("removing service {name:?}");
        self.send(&action, self.contract().removeService(name.to_string()))
            .await
    }

    /// The service `name` of `provider`, or None when it isn't listed.
    pub async fn service(
        &self,
        provider: Address,
        name: &str,
    ) -> Result<Option<Service>, ChainError> {
        let action = format!("reading service {name:?} of provider {provider}");
        match self
            .view(
                &action,
                self.contract().getService(provider, name.to_string()),
            )
            .await
        {
            Ok(service) => Ok(Some(service.into())),
            Err(e)
                if matches!(
                    e.revert(),
                    Some(ZgServing::ZgServingErrors::ServiceNotFound(_))
                ) =>
            {
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    /// All listed services, a page at a time (removal reorders them).
    pub async fn services(&self, offset: u64, limit: u64) -> Result<Page<Service>, ChainError> {
        let call = self
            .contract()
            .services(U256::from(offset), U256::from(limit));
        Ok(page(self.view("listing services", call).await?))
    }

    /// The services of `provider`, a page at a time.
    pub async fn services_of(
        &self,
        provider: Address,
        offset: u64,
        limit: u64,
    ) -> Result<Page<Service>, ChainError> {
        let action = format!("listing the services of provider {provider}");
        let call = self
            .contract()
            .servicesOf(provider, U256::from(offset), U256::from(limit));
        let p = self.view(&action, call).await?;
        Ok(Page {
            items: p.page.into_iter().map(Into::into).collect(),
            total: p.total.saturating_to(),
        })
    }

    pub async fn stake_of(&self, provider: Address) -> Result<ProviderStake, ChainError> {
        let action = format!("reading the stake of provider {provider}");
        let s = self
            .view(&action, self.contract().stakeOf(provider))
            .await?;
        Ok(ProviderStake {
            stake: s.stake,
            services: s.serviceCount.saturating_to(),
            open_disputes: s.openDisputes.saturating_to(),
            unbond_at: s.unbondAt,
        })
    }

    /// Neuron a provider must have staked to list a service.
    pub async fn min_stake(&self) -> Result<U256, ChainError> {
        self.view("reading the minimum stake", self.contract().minStake())
            .await
    }

    /// The highest minimum stake the owner may set.
    pub async fn max_min_stake(&self) -> Result<U256, ChainError> {
        self.view(
            "reading the minimum stake bound",
            self.contract().MAX_MIN_STAKE(),
        )
        .await
    }

    /// Owner only: sets the minimum stake (at most MAX_MIN_STAKE).
    pub async fn set_min_stake(&self, amount: U256) -> Result<Outcome, ChainError> {
        let action = format!("setting the minimum stake to {amount} neuron");
        self.send(&action, self.contract().setMinStake(amount))
            .await
    }
}
