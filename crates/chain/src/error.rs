//! What can go wrong talking to the chain, each case with what to do about it.

use crate::bindings::{FineTuning::FineTuningErrors, ZgServing::ZgServingErrors};
use alloy::primitives::{Address, Bytes};
use zg_core::format_amount;

#[derive(Debug, thiserror::Error)]
pub enum ChainError {
    /// The contract refused the call with one of its own errors.
    #[error("{action}: the contract refused: {}", describe(error))]
    Reverted {
        action: String,
        error: Box<ZgServingErrors>,
    },

    /// The FineTuning contract refused a job's call with one of its errors.
    #[error("{action}: the fine-tuning contract refused: {}", describe_job(error))]
    JobRefused {
        action: String,
        error: Box<FineTuningErrors>,
    },

    /// The call reverted with data this client doesn't know (or none).
    #[error(
        "{action}: the transaction reverted (revert data: {data:?}); is {contract} a ZgServing contract?"
    )]
    RevertedUnknown {
        action: String,
        contract: Address,
        data: Option<Bytes>,
    },

    /// The node could not be reached, or answered with an error that is not a revert.
    #[error(
        "{action}: the chain node failed: {source}; check that the RPC URL is right and the node is up"
    )]
    Rpc {
        action: String,
        #[source]
        source: Box<alloy::contract::Error>,
    },

    #[error(
        "{action}: the chain node failed: {source}; check that the RPC URL is right and the node is up"
    )]
    Transport {
        action: String,
        #[source]
        source: Box<alloy::transports::TransportError>,
    },

    /// A transaction was mined but did not succeed.
    #[error("{action}: transaction {tx} was mined but failed (status 0)")]
    TxFailed {
        action: String,
        tx: alloy::primitives::B256,
    },

    #[error(
        "no contract code at {address} on chain {chain_id}: deploy one first or fix the contract address"
    )]
    NoContract { address: Address, chain_id: u64 },

    #[error(
        "the code at {address} on chain {chain_id} is not this build's ZgServing ({found} bytes, expected {expected}): a different contract, or another version of zg-serving deployed it"
    )]
    CodeMismatch {
        address: Address,
        chain_id: u64,
        found: usize,
        expected: usize,
    },

    #[error("the private key is not a valid secp256k1 key: {0}")]
    InvalidKey(String),

    #[error("{action}: the chain returned something unexpected: {reason}")]
    Unexpected { action: String, reason: String },
}

impl ChainError {
    /// The contract's own error, if the contract refused the call.
    pub fn revert(&self) -> Option<&ZgServingErrors> {
        match self {
            Self::Reverted { error, .. } => Some(error),
            _ => None,
        }
    }

    /// The FineTuning contract's own error, if it refused the call.
    pub fn job_revert(&self) -> Option<&FineTuningErrors> {
        match self {
            Self::JobRefused { error, .. } => Some(error),
            _ => None,
        }
    }

    pub(crate) fn from_contract(
        action: impl Into<String>,
        contract: Address,
        err: alloy::contract::Error,
    ) -> Self {
        let action = action.into();
        if let Some(error) = err.as_decoded_interface_error::<ZgServingErrors>() {
            return Self::Reverted {
                action,
                error: Box::new(error),
            };
        }
        if let Some(data) = err.as_revert_data() {
            return Self::RevertedUnknown {
                action,
                contract,
                data: Some(data),
            };
        }
        let reverted = matches!(&err, alloy::contract::Error::TransportError(e)
            if e.as_error_resp().is_some_and(|resp| resp.message.contains("revert")));
        if reverted {
            return Self::RevertedUnknown {
                action,
                contract,
                data: None,
            };
        }
        Self::Rpc {
            action,
            source: Box::new(err),
        }
    }

    /// [`ChainError::from_contract`] for calls to the FineTuning contract,
    /// whose own errors come first (the escrow's may bubble up through it).
    pub(crate) fn from_job_contract(
        action: impl Into<String>,
        contract: Address,
        err: alloy::contract::Error,
    ) -> Self {
        let action = action.into();
        match err.as_decoded_interface_error::<FineTuningErrors>() {
            Some(error) => Self::JobRefused {
                action,
                error: Box::new(error),
            },
            None => Self::from_contract(action, contract, err),
        }
    }

    pub(crate) fn transport(
        action: impl Into<String>,
        err: alloy::transports::TransportError,
    ) -> Self {
        Self::Transport {
            action: action.into(),
            source: Box::new(err),
        }
    }
}

fn amount(neuron: alloy::primitives::U256) -> String {
    format!("{} (neuron {neuron})", format_amount(neuron))
}

/// The contract's errors in words, with the way out where there is one.
fn describe(error: &ZgServingErrors) -> String {
    use ZgServingErrors as E;
    match error {
        E::ZeroAmount(_) => "the amount must be more than zero".into(),
        E::InsufficientBalance(e) => format!(
            "the ledger balance of {} is {}, {} was asked for: deposit more or ask for less",
            e.account,
            amount(e.available),
            amount(e.requested)
        ),
        E::InsufficientEscrow(e) => format!(
            "the escrow of {} at provider {} is {}, {} was asked for",
            e.user,
            e.provider,
            amount(e.escrow),
            amount(e.requested)
        ),
        E::AmountTooLarge(e) => format!("amount {} does not fit the escrow's 128 bits", e.amount),
        E::NoRefundPending(e) => format!(
            "{} has no refund pending at provider {}: request one first",
            e.user, e.provider
        ),
        E::RefundLocked(e) => format!(
            "the refund of {} at provider {} unlocks at unix time {}: claim after that",
            e.user, e.provider, e.unlockAt
        ),
        E::LockPeriodOutOfBounds(e) => format!(
            "lock period {} s is outside {}..={} s",
            e.lockPeriod, e.min, e.max
        ),
        E::MinStakeOutOfBounds(e) => format!(
            "minimum stake {} is above the limit {}",
            amount(e.minStake),
            amount(e.max)
        ),
        E::StakeTooLow(e) => format!(
            "provider {} would have a stake of {}, the minimum is {}: send more stake with the service",
            e.provider,
            amount(e.stake),
            amount(e.required)
        ),
        E::EmptyServiceName(_) => "a service needs a name".into(),
        E::ServiceNotFound(e) => {
            format!("provider {} has no service named {:?}", e.provider, e.name)
        }
        E::LengthMismatch(e) => format!(
            "{} vouchers but {} signatures: send one signature per voucher",
            e.vouchers, e.signatures
        ),
        E::TransferFailed(e) => format!(
            "sending {} to {} failed: the receiving contract refused the payment",
            amount(e.amount),
            e.to
        ),
        E::OwnableUnauthorizedAccount(e) => {
            format!(
                "{} is not the contract owner; only the owner may do this",
                e.account
            )
        }
        E::OwnableInvalidOwner(e) => format!("{} can't be the owner", e.owner),
        E::ReentrancyGuardReentrantCall(_) => "reentrant call refused".into(),
        E::FreshStakeRequired(e) => format!(
            "service {:?} of provider {} failed verification: list it again with at least {} of fresh stake",
            e.name,
            e.provider,
            amount(e.required)
        ),
        E::CommitmentHeld(e) => format!(
            "service {:?} of provider {} changed its signer, model or method less than a dispute window ago: receipts signed before stay disputable until unix time {}, change it again after that",
            e.name, e.provider, e.until
        ),
        E::StakeStillListed(e) => format!(
            "provider {} still lists {} services: remove them all, then wait out the unbonding period",
            e.provider, e.services
        ),
        E::NoStake(e) => format!("provider {} has no stake", e.provider),
        E::StakeUnbonding(e) => format!(
            "the stake of provider {} is unbonding until unix time {}: withdraw after that",
            e.provider, e.unbondAt
        ),
        E::DisputesOpen(e) => format!(
            "{} disputes against provider {} are open: its stake stays until they are resolved",
            e.open, e.provider
        ),
        E::WrongBond(e) => format!(
            "a dispute bond is exactly {}, {} was sent",
            amount(e.required),
            amount(e.sent)
        ),
        E::EvidenceTooLarge(e) => format!(
            "request, response and proof are {} bytes, the limit is {}",
            e.size, e.max
        ),
        E::UnknownService(e) => format!(
            "provider {} never listed the service the receipt names ({})",
            e.provider, e.service
        ),
        E::NoProofMethod(e) => format!(
            "service {} of provider {} registers no proof method: its answers can't be disputed",
            e.service, e.provider
        ),
        E::WrongModel(e) => format!(
            "the receipt names model {}, the service registers {}",
            e.receipt, e.registered
        ),
        E::BadReceiptSignature(e) => format!(
            "the receipt's signature recovers to {}, the service's signer is {}: a forged receipt, or one of another chain or contract",
            e.recovered, e.signer
        ),
        E::DigestMismatch(e) => format!(
            "the evidence's {} hashes to {}, the receipt signed {}",
            match e.part {
                0 => "request (nonce and body)",
                1 => "response",
                _ => "proof",
            },
            e.computed,
            e.signed
        ),
        E::ReceiptFromFuture(e) => format!(
            "the receipt is dated {}, after the chain's time {}",
            e.issuedAt, e.now_
        ),
        E::DisputeWindowClosed(e) => format!(
            "the dispute window of a receipt issued at {} closed at unix time {}",
            e.issuedAt, e.closedAt
        ),
        E::AlreadyDisputed(e) => format!(
            "the receipt {} is already disputed (dispute {})",
            e.receiptDigest, e.id
        ),
        E::DisputeNotOpen(e) => format!("dispute {} is not open (state {})", e.id, e.state),
        E::VotingClosed(e) => format!(
            "voting on dispute {} closed at unix time {}",
            e.id, e.deadline
        ),
        E::VotingNotOver(e) => format!(
            "dispute {} can be expired only after its deadline, unix time {}",
            e.id, e.deadline
        ),
        E::NotVerifier(e) => format!("{} is not a registered verifier", e.signer),
        E::AlreadyVoted(e) => format!("verifier {} already voted on dispute {}", e.verifier, e.id),
        E::VerifierUnchanged(e) => format!(
            "verifier {} is already {}",
            e.verifier,
            if e.active { "registered" } else { "not registered" }
        ),
        E::QuorumOutOfBounds(e) => format!(
            "quorum {} is outside 1..={} (the registered verifiers)",
            e.quorum, e.verifiers
        ),
        E::DisputeParamsOutOfBounds(_) => "dispute parameters out of bounds: window and voting period 60 s ..= 30 days, unbonding period window + 300 s ..= 90 days, bond 1 neuron ..= 1,000,000 tokens, slash 1 ..= 10,000 bps, reward <= 10,000 bps, evidence 1 ..= 262,144 bytes".into(),
        other => format!("{other:?}"),
    }
}

/// The FineTuning contract's errors in words.
fn describe_job(error: &FineTuningErrors) -> String {
    use FineTuningErrors as E;
    match error {
        E::NotFineTuning(e) => format!(
            "service {:?} of {} is of kind {:?}, not \"fine-tuning\"",
            e.service, e.provider, e.kind
        ),
        E::NoTerms(e) => format!(
            "service {:?} of {} has set no terms (base models, limits) yet",
            e.service, e.provider
        ),
        E::BadOrderSignature(e) => format!(
            "the order is signed by {}, neither user {} nor their voucher signer",
            e.recovered, e.user
        ),
        E::BaseModelNotAccepted(e) => format!(
            "the service does not train base model {}; see its terms",
            e.baseModel
        ),
        E::BadEpochs(e) => format!("epochs must be 1..={}, the order asks {}", e.max, e.epochs),
        E::JobExists(e) => format!("job {} was already started (orders are single-use)", e.id),
        E::WrongState(e) => format!(
            "job {} is in state {}, which does not allow this",
            e.id, e.state
        ),
        E::FeeAboveReserved(e) => format!(
            "the fee {} is above the reservation {}",
            amount(e.fee),
            amount(e.reserved)
        ),
        E::FeeAbovePrice(e) => format!(
            "the fee {} is above {} trained tokens at {} per token",
            amount(e.fee),
            e.trainedTokens,
            amount(e.pricePerToken)
        ),
        E::TooEarly(e) => format!("job {} allows this only from unix time {}", e.id, e.at),
        E::OrderExpired(e) => format!(
            "the order could be started until unix time {}, it is {}: the user must sign a new one",
            e.startBy, e.at
        ),
        other => format!("{other:?}"),
    }
}
