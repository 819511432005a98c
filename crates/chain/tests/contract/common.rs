//! A fresh world per test: anvil, a deployment, and clients for its roles.

use alloy::{
    eips::BlockNumberOrTag,
    primitives::{Address, B256, Bytes, U256},
    providers::Provider,
};
use zg_chain::{ChainClient, DeployParams, bindings::ZgServing::ZgServingErrors};
use zg_core::{Prices, Service, Signature, SigningKey, Voucher};
use zg_devnet::DevChain;

pub(crate) const LOCK: u64 = 3600;

pub(crate) fn tokens(milli: u64) -> U256 {
    // Amounts in thousandths of a token keep the tests readable.
    U256::from(milli) * U256::from(1_000_000_000_000_000u64)
}

pub(crate) struct World {
    pub chain: DevChain,
    pub owner: ChainClient,
    pub provider: ChainClient,
    pub user: ChainClient,
    pub user_key: SigningKey,
    /// A second provider and a second user, for cross-account cases.
    pub other_provider: ChainClient,
    pub other_user: ChainClient,
    pub other_user_key: SigningKey,
}

impl World {
    pub(crate) async fn new() -> Self {
        let chain = DevChain::start().await.expect("anvil starts");
        let params = DeployParams {
            lock_period: LOCK,
            min_stake: tokens(100),
        };
        let owner = ChainClient::deploy(chain.url(), &chain.keys()[0], params)
            .await
            .expect("deploys");
        let client = |i: usize| owner.with_key(&chain.keys()[i]).expect("dev key");
        let key = |i: usize| SigningKey::from_bytes(&chain.keys()[i]).expect("dev key");
        Self {
            provider: client(1),
            user: client(2),
            user_key: key(2),
            other_provider: client(3),
            other_user: client(4),
            other_user_key: key(4),
            owner,
            chain,
        }
    }

    /// The user deposits `deposit` and funds `escrow` of it at the provider.
    pub(crate) async fn funded(deposit: U256, escrow: U256) -> Self {
        let world = Self::new().await;
        world.user.deposit(deposit).await.expect("deposit");
        world
            .user
            .fund(world.provider.wallet(), escrow)
            .await
            .expect("fund");
        world
    }

    /// A voucher from the user to the provider, signed by the user.
    pub(crate) fn voucher(&self, cumulative: U256) -> (Voucher, Signature) {
        let voucher = voucher_for(self.user.wallet(), self.provider.wallet(), cumulative);
        (
            voucher,
            voucher.sign(&self.user_key, &self.provider.domain()),
        )
    }

    /// The timestamp of the chain's latest block: what `block.timestamp` was
    /// in the last transaction.
    pub(crate) async fn now(&self) -> u64 {
        self.user
            .provider()
            .get_block_by_number(BlockNumberOrTag::Latest)
            .await
            .expect("reading the latest block")
            .expect("a latest block")
            .header
            .timestamp
    }

    pub(crate) async fn escrow(&self) -> (U256, U256) {
        let account = self
            .user
            .account(self.user.wallet(), self.provider.wallet())
            .await
            .expect("account");
        (account.escrow, account.settled)
    }
}

pub(crate) fn voucher_for(user: Address, provider: Address, cumulative: U256) -> Voucher {
    let request_digest = zg_core::keccak256(format!("request {user} {cumulative}"));
    Voucher {
        user,
        provider,
        cumulative,
        request_digest,
    }
}

pub(crate) fn raw(voucher: &Voucher) -> zg_chain::bindings::ZgServing::Voucher {
    zg_chain::bindings::ZgServing::Voucher {
        user: voucher.user,
        provider: voucher.provider,
        cumulative: voucher.cumulative,
        requestDigest: voucher.request_digest,
    }
}

pub(crate) fn sig_bytes(signature: &Signature) -> Bytes {
    Bytes::copy_from_slice(signature.as_bytes())
}

pub(crate) fn service(name: &str, signer: Address) -> Service {
    Service {
        provider: Address::ZERO,
        name: name.into(),
        kind: "chat".into(),
        url: format!("https://provider.example/{name}"),
        model: "qwen2.5-0.5b-instruct".into(),
        model_digest: B256::repeat_byte(0xab),
        hardware: "cpu".into(),
        prices: Prices::new(U256::from(10u64), U256::from(20u64)).with_cached(U256::from(2u64)),
        verifiability: "none".into(),
        signer,
        updated_at: 0,
        failed_at: 0,
    }
}

/// The contract error a failed call carried; panics if it failed otherwise.
pub(crate) fn revert_of<T: std::fmt::Debug>(
    result: Result<T, zg_chain::ChainError>,
) -> ZgServingErrors {
    match result {
        Err(e) => match e.revert() {
            Some(revert) => revert.clone(),
            None => panic!("expected a contract revert, got {e}"),
        },
        Ok(v) => panic!("expected a revert, got {v:?}"),
    }
}
