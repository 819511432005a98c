//! The typed client of one ZgServing deployment: a wallet-backed provider plus
//! the contract address. Methods for each concern live in their own files
//! (ledger, escrow, registry, settlement); this file holds what they share.

use crate::{
    ChainError,
    bindings::ZgServing::{self, ZgServingEvents, ZgServingInstance},
};
use alloy::{
    contract::SolCallBuilder,
    network::EthereumWallet,
    primitives::{Address, B256, U256},
    providers::{DynProvider, Provider, ProviderBuilder},
    rpc::types::{Filter, TransactionReceipt},
    signers::local::PrivateKeySigner,
    sol_types::{SolCall, SolEventInterface},
};
use zg_core::Domain;

/// Default refund lock: a provider has a day to settle before escrow leaves.
pub const DEFAULT_LOCK_PERIOD: u64 = 24 * 60 * 60;
/// Default minimum provider stake: 0.1 (in 18-decimal tokens).
pub const DEFAULT_MIN_STAKE: U256 = U256::from_limbs([100_000_000_000_000_000, 0, 0, 0]);

/// Constructor arguments of a deployment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeployParams {
    /// Seconds between a refund request and its claim (60 ..= 30 days).
    pub lock_period: u64,
    /// Neuron a provider must stake to list services.
    pub min_stake: U256,
}

impl Default for DeployParams {
    fn default() -> Self {
        Self {
            lock_period: DEFAULT_LOCK_PERIOD,
            min_stake: DEFAULT_MIN_STAKE,
        }
    }
}

/// A mined transaction: what it cost and which contract events it emitted.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub tx_hash: B256,
    pub block: u64,
    pub gas_used: u64,
    /// What the sender paid for gas, in neuron.
    pub fee: U256,
    pub events: Vec<ZgServingEvents>,
}

/// An event with where it happened, from [`ChainClient::events`].
#[derive(Debug, Clone)]
pub struct ChainEvent {
    pub block: u64,
    pub tx_hash: B256,
    pub event: ZgServingEvents,
}

/// One page of a paged view, and how many items there are in all.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub total: u64,
}

/// A fresh deployment, from [`ChainClient::deploy_recorded`].
#[derive(Debug, Clone)]
pub struct Deployed {
    /// The deployer's client of the new contract (the deployer owns it).
    pub client: ChainClient,
    pub tx_hash: B256,
    /// The block that mined the deployment.
    pub block: u64,
}

/// The shared RPC client trusting webpki's roots.
fn default_http() -> Result<reqwest::Client, ChainError> {
    crate::tls::rpc_client().map_err(|e| ChainError::Unexpected {
        action: "connecting to the chain".into(),
        reason: e.to_string(),
    })
}

/// A wallet talking to one ZgServing contract.
#[derive(Clone)]
pub struct ChainClient {
    rpc_url: String,
    /// The HTTP client the RPC goes through (its TLS roots), kept for `with_key`.
    http: reqwest::Client,
    provider: DynProvider,
    contract: ZgServingInstance<DynProvider>,
    account: Address,
    /// The same key as `provider`'s, for transactions signed apart from sending.
    wallet: EthereumWallet,
    domain: Domain,
}

impl std::fmt::Debug for ChainClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChainClient")
            .field("rpc_url", &self.rpc_url)
            .field("contract", self.contract.address())
            .field("account", &self.account)
            .field("chain_id", &self.domain.chain_id)
            .finish()
    }
}

fn wallet_provider(
    rpc_url: &str,
    key: &B256,
    http: reqwest::Client,
) -> Result<(DynProvider, Address, EthereumWallet), ChainError> {
    let signer =
        PrivateKeySigner::from_bytes(key).map_err(|e| ChainError::InvalidKey(e.to_string()))?;
    let account = signer.address();
    let url = rpc_url.parse().map_err(|e| ChainError::Unexpected {
        action: "connecting to the chain".into(),
        reason: format!("RPC URL {rpc_url:?} is not a URL: {e}"),
    })?;
    // Nonces are fetched per transaction: a cached nonce would be spent by a
    // call that reverts in gas estimation and stall every later transaction.
    let wallet = EthereumWallet::from(signer);
    let provider = ProviderBuilder::default()
        .with_gas_estimation()
        .with_simple_nonce_management()
        .fetch_chain_id()
        .wallet(wallet.clone())
        .connect_reqwest(http, url);
    Ok((provider.erased(), account, wallet))
}

impl ChainClient {
    /// Connects `key`'s wallet to the contract at `contract`, checking that code is there.
    pub async fn connect(rpc_url: &str, contract: Address, key: &B256) -> Result<Self, ChainError> {
        Self::connect_via(default_http()?, rpc_url, contract, key).await
    }

    /// [`ChainClient::connect`] through `http` (e.g. one from
    /// [`crate::tls::rpc_client_trusting`], for an RPC behind a private CA).
    pub async fn connect_via(
        http: reqwest::Client,
        rpc_url: &str,
        contract: Address,
        key: &B256,
    ) -> Result<Self, ChainError> {
        let (provider, account, wallet) = wallet_provider(rpc_url, key, http.clone())?;
        let chain_id = provider
            .get_chain_id()
            .await
            .map_err(|e| ChainError::transport(format!("asking {rpc_url} for its chain id"), e))?;
        let code = provider
            .get_code_at(contract)
            .await
            .map_err(|e| ChainError::transport(format!("reading the code at {contract}"), e))?;
        if code.is_empty() {
            return Err(ChainError::NoContract {
                address: contract,
                chain_id,
            });
        }
        Ok(Self::assemble(
            rpc_url, http, provider, account, wallet, contract, chain_id,
        ))
    }

    /// Deploys a new ZgServing from `key`'s wallet (which becomes its owner).
    pub async fn deploy(
        rpc_url: &str,
        key: &B256,
        params: DeployParams,
    ) -> Result<Self, ChainError> {
        Ok(Self::deploy_recorded(rpc_url, key, params).await?.client)
    }

    /// [`ChainClient::deploy`], and where it happened: the transaction and
    /// the block that mined it, which a network file records.
    pub async fn deploy_recorded(
        rpc_url: &str,
        key: &B256,
        params: DeployParams,
    ) -> Result<Deployed, ChainError> {
        let http = default_http()?;
        let (provider, account, wallet) = wallet_provider(rpc_url, key, http.clone())?;
        let chain_id = provider
            .get_chain_id()
            .await
            .map_err(|e| ChainError::transport(format!("asking {rpc_url} for its chain id"), e))?;
        let action = "deploying ZgServing";
        let receipt =
            ZgServing::deploy_builder(provider.clone(), params.lock_period, params.min_stake)
                .send()
                .await
                .map_err(|e| ChainError::from_contract(action, Address::ZERO, e))?
                .get_receipt()
                .await
                .map_err(|e| ChainError::from_contract(action, Address::ZERO, e.into()))?;
        if !receipt.status() {
            return Err(ChainError::TxFailed {
                action: action.into(),
                tx: receipt.transaction_hash,
            });
        }
        let contract = receipt
            .contract_address
            .ok_or_else(|| ChainError::Unexpected {
                action: action.into(),
                reason: format!(
                    "the receipt of {} names no contract address",
                    receipt.transaction_hash
                ),
            })?;
        tracing::info!(%contract, chain_id, owner = %account, "deployed ZgServing");
        Ok(Deployed {
            client: Self::assemble(rpc_url, http, provider, account, wallet, contract, chain_id),
            tx_hash: receipt.transaction_hash,
            block: receipt.block_number.unwrap_or_default(),
        })
    }

    fn assemble(
        rpc_url: &str,
        http: reqwest::Client,
        provider: DynProvider,
        account: Address,
        wallet: EthereumWallet,
        contract: Address,
        chain_id: u64,
    ) -> Self {
        Self {
            rpc_url: rpc_url.to_string(),
            http,
            contract: ZgServing::new(contract, provider.clone()),
            provider,
            account,
            wallet,
            domain: Domain::new(chain_id, contract),
        }
    }

    /// The same deployment through another wallet (no round trip).
    pub fn with_key(&self, key: &B256) -> Result<Self, ChainError> {
        let (provider, account, wallet) = wallet_provider(&self.rpc_url, key, self.http.clone())?;
        Ok(Self::assemble(
            &self.rpc_url,
            self.http.clone(),
            provider,
            account,
            wallet,
            self.contract_address(),
            self.domain.chain_id,
        ))
    }

    /// The contract's address.
    pub fn contract_address(&self) -> Address {
        *self.contract.address()
    }

    /// The wallet that signs this client's transactions.
    pub fn wallet(&self) -> Address {
        self.account
    }

    pub(crate) fn eth_wallet(&self) -> &EthereumWallet {
        &self.wallet
    }

    /// The EIP-712 domain vouchers and receipts for this deployment are signed in.
    pub fn domain(&self) -> Domain {
        self.domain
    }

    pub fn chain_id(&self) -> u64 {
        self.domain.chain_id
    }

    pub fn rpc_url(&self) -> &str {
        &self.rpc_url
    }

    /// The underlying alloy provider, for what this client doesn't wrap.
    pub fn provider(&self) -> &DynProvider {
        &self.provider
    }

    /// The generated contract binding, for calls this client doesn't wrap.
    pub fn contract(&self) -> &ZgServingInstance<DynProvider> {
        &self.contract
    }

    /// Native token balance of `who` (not the ledger balance).
    pub async fn native_balance(&self, who: Address) -> Result<U256, ChainError> {
        self.provider
            .get_balance(who)
            .await
            .map_err(|e| ChainError::transport(format!("reading the native balance of {who}"), e))
    }

    pub async fn owner(&self) -> Result<Address, ChainError> {
        self.view("reading the owner", self.contract.owner()).await
    }

    /// Hands the owner's powers (lock period, minimum stake) to `new_owner`.
    pub async fn transfer_ownership(&self, new_owner: Address) -> Result<Outcome, ChainError> {
        let action = format!("transferring ownership to {new_owner}");
        self.send(&action, self.contract.transferOwnership(new_owner))
            .await
    }

    /// The number of the latest block.
    pub async fn block_number(&self) -> Result<u64, ChainError> {
        self.provider
            .get_block_number()
            .await
            .map_err(|e| ChainError::transport("reading the block number", e))
    }

    /// Every event of this contract from `from_block` to the latest block.
    pub async fn events(&self, from_block: u64) -> Result<Vec<ChainEvent>, ChainError> {
        let filter = Filter::new()
            .address(self.contract_address())
            .from_block(from_block);
        let logs = self
            .provider
            .get_logs(&filter)
            .await
            .map_err(|e| ChainError::transport("reading contract events", e))?;
        logs.iter()
            .map(|log| {
                let event = ZgServingEvents::decode_raw_log(log.topics(), &log.data().data)
                    .map_err(|e| ChainError::Unexpected {
                        action: "decoding a contract event".into(),
                        reason: e.to_string(),
                    })?;
                Ok(ChainEvent {
                    block: log.block_number.unwrap_or_default(),
                    tx_hash: log.transaction_hash.unwrap_or_default(),
                    event,
                })
            })
            .collect()
    }

    /// Sends a transaction, waits for its receipt and decodes its events.
    pub(crate) async fn send<C: SolCall>(
        &self,
        action: &str,
        call: SolCallBuilder<&DynProvider, C>,
    ) -> Result<Outcome, ChainError> {
        self.send_mapped(action, call, ChainError::from_contract)
            .await
    }

    /// [`ChainClient::send`] with the contract's errors read by `refused`
    /// (each contract has its own).
    pub(crate) async fn send_mapped<C: SolCall>(
        &self,
        action: &str,
        call: SolCallBuilder<&DynProvider, C>,
        refused: fn(String, Address, alloy::contract::Error) -> ChainError,
    ) -> Result<Outcome, ChainError> {
        let to = self.contract_address();
        let pending = call
            .send()
            .await
            .map_err(|e| refused(action.into(), to, e))?;
        let receipt = pending
            .get_receipt()
            .await
            .map_err(|e| refused(action.into(), to, e.into()))?;
        self.outcome(action, &receipt)
    }

    pub(crate) async fn view<C: SolCall>(
        &self,
        action: &str,
        call: SolCallBuilder<&DynProvider, C>,
    ) -> Result<C::Return, ChainError> {
        call.call()
            .await
            .map_err(|e| ChainError::from_contract(action, self.contract_address(), e))
    }

    pub(crate) fn outcome(
        &self,
        action: &str,
        receipt: &TransactionReceipt,
    ) -> Result<Outcome, ChainError> {
        if !receipt.status() {
            return Err(ChainError::TxFailed {
                action: action.into(),
                tx: receipt.transaction_hash,
            });
        }
        let events = receipt
            .logs()
            .iter()
            .filter(|log| log.address() == self.contract_address())
            .map(|log| {
                ZgServingEvents::decode_raw_log(log.topics(), &log.data().data).map_err(|e| {
                    ChainError::Unexpected {
                        action: action.into(),
                        reason: format!("undecodable event in {}: {e}", receipt.transaction_hash),
                    }
                })
            })
            .collect::<Result<_, _>>()?;
        Ok(Outcome {
            tx_hash: receipt.transaction_hash,
            block: receipt.block_number.unwrap_or_default(),
            gas_used: receipt.gas_used,
            fee: U256::from(receipt.gas_used) * U256::from(receipt.effective_gas_price),
            events,
        })
    }
}
