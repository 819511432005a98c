//! A local chain with the contract deployed by dev account 0, and users
//! funded from the other dev accounts.

use crate::{DevChain, DevChainOptions, DevnetError};
use zg_chain::{ChainClient, DeployParams};
use zg_core::{Address, Domain, SigningKey, U256};

pub struct Market {
    pub chain: DevChain,
    /// Dev account 0, which deployed the contract (and owns it).
    pub deployer: ChainClient,
}

impl Market {
    /// anvil with `chain`'s options, and the contract deployed with `deploy`.
    pub async fn start(chain: DevChainOptions, deploy: DeployParams) -> Result<Self, DevnetError> {
        let chain = DevChain::start_with(chain).await?;
        let deployer = ChainClient::deploy(chain.url(), &chain.keys()[0], deploy).await?;
        Ok(Self { chain, deployer })
    }

    /// What the test suites stand on: 20 dev accounts (0 deploys, the rest
    /// are providers and users) and a 60-second refund lock.
    pub async fn for_tests() -> Result<Self, DevnetError> {
        Self::start(
            DevChainOptions {
                accounts: 20,
                ..Default::default()
            },
            DeployParams {
                lock_period: 60,
                ..Default::default()
            },
        )
        .await
    }

    /// The EIP-712 domain vouchers and receipts are signed under.
    pub fn domain(&self) -> Domain {
        self.deployer.domain()
    }

    /// Dev account `index` (its key is anvil's).
    pub fn key(&self, index: usize) -> Result<SigningKey, DevnetError> {
        Ok(SigningKey::from_bytes(&self.chain.keys()[index])?)
    }

    /// Dev account `index` as a user that deposited `escrow` for each of
    /// `providers` and funded each provider's escrow with it (nothing moves
    /// when `escrow` is zero).
    pub async fn user(
        &self,
        index: usize,
        escrow: U256,
        providers: &[Address],
    ) -> Result<(SigningKey, ChainClient), DevnetError> {
        let client = self.deployer.with_key(&self.chain.keys()[index])?;
        if !escrow.is_zero() {
            client
                .deposit(escrow * U256::from(providers.len().max(1)))
                .await?;
            for provider in providers {
                client.fund(*provider, escrow).await?;
            }
        }
        Ok((self.key(index)?, client))
    }
}
