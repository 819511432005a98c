//! Admission of a paid request, exactly as DESIGN.md says: the voucher's
//! signature (user or delegated signer), its `requestDigest` against the
//! nonce and body received, then (inside the store's transaction on the
//! user's row) replay, cumulative never decreasing, credit limit, and escrow
//! covering what is owed, in flight and this request's worst case.

use zg_core::{Address, Signature, U256, Voucher, format_amount};

use crate::{error::ApiError, store::Account};
use zg_core::ErrorCode;

/// A request that passed the signature checks, for the store to admit.
#[derive(Debug, Clone)]
pub struct Admission {
    /// The broker's id of this request (`X-ZG-Request-Id`).
    pub id: String,
    pub replica: String,
    pub service: String,
    pub voucher: Voucher,
    pub signature: Signature,
    /// Most this request can cost.
    pub worst: U256,
    pub credit_limit: U256,
    /// Most the user can ever be owed here: escrow + settled on chain, less a
    /// refund that unlocks before the next settlement could land.
    pub cap: U256,
}

/// Why the store refused a voucher.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    Replayed,
    Stale {
        newest: U256,
        got: U256,
    },
    AboveOwed {
        owed: U256,
        got: U256,
    },
    Credit {
        owed: U256,
        cumulative: U256,
        limit: U256,
    },
    Escrow {
        needed: U256,
        available: U256,
    },
    UnknownReceipt,
}

/// The account after admitting `a`, or why not. Pure: the store calls it
/// while it holds the user's row.
pub fn decide(account: &Account, a: &Admission) -> Result<Account, Refusal> {
    let mut next = check_voucher(account, &a.voucher)?;
    let unpaid = account.owed.saturating_sub(a.voucher.cumulative);
    if unpaid > a.credit_limit {
        return Err(Refusal::Credit {
            owed: account.owed,
            cumulative: a.voucher.cumulative,
            limit: a.credit_limit,
        });
    }
    let committed = account.owed.saturating_add(account.reserved);
    let needed = committed.saturating_add(a.worst);
    if needed > a.cap {
        return Err(Refusal::Escrow {
            needed: a.worst,
            available: a.cap.saturating_sub(committed),
        });
    }
    next.reserved = account.reserved.saturating_add(a.worst);
    if a.voucher.cumulative >= account.cumulative() {
        next.voucher = Some((a.voucher, a.signature));
    }
    Ok(next)
}

/// The account after accepting an acknowledgement voucher.
pub fn decide_ack(
    account: &Account,
    voucher: &Voucher,
    signature: Signature,
) -> Result<Account, Refusal> {
    let mut next = check_voucher(account, voucher)?;
    next.voucher = Some((*voucher, signature));
    Ok(next)
}

fn check_voucher(account: &Account, voucher: &Voucher) -> Result<Account, Refusal> {
    if voucher.cumulative < account.cumulative() {
        return Err(Refusal::Stale {
            newest: account.cumulative(),
            got: voucher.cumulative,
        });
    }
    // An honest client signs for the fees its receipts showed, never more; a
    // higher cumulative would let settlement take money no answer earned.
    if voucher.cumulative > account.owed {
        return Err(Refusal::AboveOwed {
            owed: account.owed,
            got: voucher.cumulative,
        });
    }
    Ok(account.clone())
}

impl Refusal {
    pub fn into_api(self, user: Address, provider: Address) -> ApiError {
        let g = |n: U256| format!("{} 0G", format_amount(n));
        match self {
            Self::Replayed => ApiError::new(
                ErrorCode::VoucherReplayed,
                "this voucher (user, requestDigest) was already accepted: sign a fresh voucher with a new X-ZG-Nonce",
            ),
            Self::Stale { newest, got } => ApiError::new(
                ErrorCode::VoucherStale,
                format!(
                    "X-ZG-Cumulative {got} is below {newest}, the newest voucher already accepted from {user}: cumulative never goes down; sign with at least {newest}"
                ),
            ),
            Self::AboveOwed { owed, got } => ApiError::new(
                ErrorCode::VoucherInvalid,
                format!(
                    "X-ZG-Cumulative {got} is more than the {owed} neuron {user} owes provider {provider}: sign for the fees your receipts show (GET /v1/account/{user})"
                ),
            ),
            Self::Credit {
                owed,
                cumulative,
                limit,
            } => ApiError::new(
                ErrorCode::CreditExceeded,
                format!(
                    "{user} owes {} but the voucher covers {}; the credit limit is {}: send a voucher for the receipts you hold (POST /v1/vouchers)",
                    g(owed),
                    g(cumulative),
                    g(limit)
                ),
            ),
            Self::Escrow { needed, available } => ApiError::new(
                ErrorCode::InsufficientEscrow,
                format!(
                    "escrow for {user} at provider {provider} covers {} beyond what is owed and in flight, this request needs up to {}: fund more with `zg-serving user fund`",
                    g(available),
                    g(needed)
                ),
            ),
            Self::UnknownReceipt => ApiError::new(
                ErrorCode::VoucherInvalid,
                format!(
                    "the acknowledgement voucher's requestDigest is not the EIP-712 hash of any receipt this provider gave {user}"
                ),
            ),
        }
    }
}

/// Upper bound on input tokens for a body: a token is at least one byte of
/// the JSON it came in, plus room for the chat template's own tokens.
pub fn input_bound(body_len: usize) -> u64 {
    body_len as u64 + 256
}

#[cfg(test)]
mod tests {
    use super::*;
    use zg_core::{B256, SigningKey};

    fn admission(cumulative: u64, worst: u64, cap: u64) -> Admission {
        let key = SigningKey::random();
        Admission {
            id: "r".into(),
            replica: "main".into(),
            service: "chat".into(),
            voucher: Voucher {
                user: key.address(),
                provider: Address::repeat_byte(2),
                cumulative: U256::from(cumulative),
                request_digest: B256::repeat_byte(1),
            },
            signature: key.sign_hash(&B256::ZERO),
            worst: U256::from(worst),
            credit_limit: U256::from(10u64),
            cap: U256::from(cap),
        }
    }

    fn account(owed: u64, reserved: u64, cumulative: u64) -> Account {
        let a = admission(cumulative, 0, 0);
        Account {
            owed: U256::from(owed),
            reserved: U256::from(reserved),
            voucher: Some((a.voucher, a.signature)),
            ..Account::new(a.voucher.user)
        }
    }

    #[test]
    fn admits_and_reserves_the_worst_case() {
        let next = decide(&account(50, 5, 45), &admission(48, 20, 100)).unwrap();
        assert_eq!(next.reserved, U256::from(25u64));
        assert_eq!(next.cumulative(), U256::from(48u64));
    }

    #[test]
    fn each_rule_refuses() {
        assert!(matches!(
            decide(&account(50, 0, 45), &admission(44, 1, 100)),
            Err(Refusal::Stale { .. })
        ));
        assert!(matches!(
            decide(&account(50, 0, 45), &admission(51, 1, 100)),
            Err(Refusal::AboveOwed { .. })
        ));
        assert!(matches!(
            decide(&account(50, 0, 30), &admission(39, 1, 100)),
            Err(Refusal::Credit { .. })
        ));
        // 50 owed + 30 in flight + 21 worst > 100.
        assert_eq!(
            decide(&account(50, 30, 45), &admission(45, 21, 100)),
            Err(Refusal::Escrow {
                needed: U256::from(21u64),
                available: U256::from(20u64)
            })
        );
        assert!(decide(&account(50, 30, 45), &admission(45, 20, 100)).is_ok());
    }
}
