//! Admission of a paid request, exactly as DESIGN.md says: the voucher's
//! signature (user or delegated signer), its `requestDigest` against the
//! nonce and body received, then (inside the store's transaction on the
//! user's row) replay, cumulative never decreasing, credit limit, and escrow
//! covering what is owed, in flight and this request's worst case.

use zg_core::{Address, Signature, U256, Voucher};

/// What the broker knows of one user: what they owe, what their requests in
/// flight may still cost, and their newest voucher (the store keeps one per
/// user; the user's escrow itself is on chain).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tab {
    pub user: Address,
    /// Every fee ever charged to this user.
    pub owed: U256,
    /// Worst cases of the user's requests in flight.
    pub reserved: U256,
    /// The user's settled total on chain, as last seen.
    pub settled: U256,
    /// The accepted voucher with the highest cumulative.
    pub voucher: Option<(Voucher, Signature)>,
}

impl Tab {
    pub fn new(user: Address) -> Self {
        Self {
            user,
            owed: U256::ZERO,
            reserved: U256::ZERO,
            settled: U256::ZERO,
            voucher: None,
        }
    }

    pub fn cumulative(&self) -> U256 {
        self.voucher.map_or(U256::ZERO, |(v, _)| v.cumulative)
    }

    /// Value a settlement of the newest voucher would still collect.
    pub fn unsettled(&self) -> U256 {
        self.cumulative().saturating_sub(self.settled)
    }
}

/// A request that passed the signature checks, for the store to admit.
#[derive(Debug, Clone)]
pub(crate) struct Admission {
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
pub(crate) enum Refusal {
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

/// The tab after admitting `a`, or why not. Pure: the store calls it
/// while it holds the user's row.
pub(crate) fn decide(tab: &Tab, a: &Admission) -> Result<Tab, Refusal> {
    let mut next = check_voucher(tab, &a.voucher)?;
    let unpaid = tab.owed.saturating_sub(a.voucher.cumulative);
    if unpaid > a.credit_limit {
        return Err(Refusal::Credit {
            owed: tab.owed,
            cumulative: a.voucher.cumulative,
            limit: a.credit_limit,
        });
    }
    let committed = tab.owed.saturating_add(tab.reserved);
    let needed = committed.saturating_add(a.worst);
    if needed > a.cap {
        return Err(Refusal::Escrow {
            needed: a.worst,
            available: a.cap.saturating_sub(committed),
        });
    }
    next.reserved = tab.reserved.saturating_add(a.worst);
    if a.voucher.cumulative >= tab.cumulative() {
        next.voucher = Some((a.voucher, a.signature));
    }
    Ok(next)
}

/// The tab after accepting an acknowledgement voucher.
pub(crate) fn decide_ack(
    tab: &Tab,
    voucher: &Voucher,
    signature: Signature,
) -> Result<Tab, Refusal> {
    let mut next = check_voucher(tab, voucher)?;
    next.voucher = Some((*voucher, signature));
    Ok(next)
}

fn check_voucher(tab: &Tab, voucher: &Voucher) -> Result<Tab, Refusal> {
    if voucher.cumulative < tab.cumulative() {
        return Err(Refusal::Stale {
            newest: tab.cumulative(),
            got: voucher.cumulative,
        });
    }
    // An honest client signs for the fees its receipts showed, never more; a
    // higher cumulative would let settlement take money no answer earned.
    if voucher.cumulative > tab.owed {
        return Err(Refusal::AboveOwed {
            owed: tab.owed,
            got: voucher.cumulative,
        });
    }
    Ok(tab.clone())
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

    fn tab(owed: u64, reserved: u64, cumulative: u64) -> Tab {
        let a = admission(cumulative, 0, 0);
        Tab {
            owed: U256::from(owed),
            reserved: U256::from(reserved),
            voucher: Some((a.voucher, a.signature)),
            ..Tab::new(a.voucher.user)
        }
    }

    #[test]
    fn admits_and_reserves_the_worst_case() {
        let next = decide(&tab(50, 5, 45), &admission(48, 20, 100)).unwrap();
        assert_eq!(next.reserved, U256::from(25u64));
        assert_eq!(next.cumulative(), U256::from(48u64));
    }

    #[test]
    fn each_rule_refuses() {
        assert!(matches!(
            decide(&tab(50, 0, 45), &admission(44, 1, 100)),
            Err(Refusal::Stale { .. })
        ));
        assert!(matches!(
            decide(&tab(50, 0, 45), &admission(51, 1, 100)),
            Err(Refusal::AboveOwed { .. })
        ));
        assert!(matches!(
            decide(&tab(50, 0, 30), &admission(39, 1, 100)),
            Err(Refusal::Credit { .. })
        ));
        // 50 owed + 30 in flight + 21 worst > 100.
        assert_eq!(
            decide(&tab(50, 30, 45), &admission(45, 21, 100)),
            Err(Refusal::Escrow {
                needed: U256::from(21u64),
                available: U256::from(20u64)
            })
        );
        assert!(decide(&tab(50, 30, 45), &admission(45, 20, 100)).is_ok());
    }
}
