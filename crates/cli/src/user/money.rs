//! Money commands: new-key, deposit, withdraw, fund, refund, claim,
//! set-signer and ledger.

use super::{ChainArgs, Out, wallet};
use serde_json::json;
use std::path::Path;
use zg_chain::Outcome;
use zg_client::{Accounts, Book};
use zg_core::{Address, U256, format_amount};

pub(super) fn new_key(key: &wallet::KeyArgs, out_path: &Path, out: Out) -> anyhow::Result<()> {
    let password = key.password()?;
    let k = wallet::new_keystore(out_path, &password)?;
    out.print(json!({ "address": k.address(), "keystore": out_path }), || {
        format!(
            "new key {} in {}\nnext: send it tokens, then `zg-serving user deposit --amount 1 --keystore {}`",
            k.address(),
            out_path.display(),
            out_path.display()
        )
    });
    Ok(())
}

fn done(out: Out, what: String, o: &Outcome) {
    out.print(
        json!({ "done": what, "tx": o.tx_hash, "block": o.block, "gasUsed": o.gas_used }),
        || format!("{what} (tx {}, block {})", o.tx_hash, o.block),
    );
}

async fn accounts(c: &ChainArgs) -> anyhow::Result<Accounts> {
    Ok(Accounts::new(c.session().await?.chain))
}

pub(super) async fn deposit(c: &ChainArgs, amount: U256, out: Out) -> anyhow::Result<()> {
    let o = accounts(c).await?.deposit(amount).await?;
    done(out, format!("deposited {} 0G", format_amount(amount)), &o);
    Ok(())
}

pub(super) async fn withdraw(c: &ChainArgs, amount: U256, out: Out) -> anyhow::Result<()> {
    let o = accounts(c).await?.withdraw(amount).await?;
    done(out, format!("withdrew {} 0G", format_amount(amount)), &o);
    Ok(())
}

pub(super) async fn fund(
    c: &ChainArgs,
    provider: Address,
    amount: U256,
    out: Out,
) -> anyhow::Result<()> {
    let o = accounts(c).await?.fund(provider, amount).await?;
    done(
        out,
        format!(
            "funded {} 0G of escrow at {provider}",
            format_amount(amount)
        ),
        &o,
    );
    Ok(())
}

pub(super) async fn refund(
    c: &ChainArgs,
    provider: Address,
    amount: U256,
    out: Out,
) -> anyhow::Result<()> {
    let accounts = accounts(c).await?;
    let o = accounts.request_refund(provider, amount).await?;
    let unlock = accounts
        .escrow(provider)
        .await?
        .refund
        .map(|r| r.unlock_at)
        .unwrap_or_default();
    done(
        out,
        format!(
            "refund of {} 0G from {provider} requested; claim it after unix time {unlock} with `zg-serving user claim --provider {provider}`",
            format_amount(amount)
        ),
        &o,
    );
    Ok(())
}

pub(super) async fn claim(c: &ChainArgs, provider: Address, out: Out) -> anyhow::Result<()> {
    let o = accounts(c).await?.claim_refund(provider).await?;
    done(out, format!("claimed the refund from {provider}"), &o);
    Ok(())
}

pub(super) async fn set_signer(c: &ChainArgs, signer: Address, out: Out) -> anyhow::Result<()> {
    let o = accounts(c).await?.set_voucher_signer(signer).await?;
    done(
        out,
        format!("{signer} may now sign vouchers for this user"),
        &o,
    );
    Ok(())
}

pub(super) async fn ledger(c: &ChainArgs, out: Out) -> anyhow::Result<()> {
    let session = c.session().await?;
    let summary = Accounts::new(session.chain.clone()).summary().await?;
    let book = Book::open(&c.book_path()?, summary.user).await?;
    let owed = book.tabs().await?;
    let owed_at = |p: Address| {
        owed.iter()
            .find(|a| a.provider == p)
            .copied()
            .unwrap_or_default()
    };
    let a = format_amount;
    let escrows: Vec<_> = summary
        .escrows
        .iter()
        .map(|e| {
            let b = owed_at(e.provider);
            json!({
                "provider": e.provider, "escrow": a(e.escrow), "settled": a(e.settled),
                "refundAmount": a(e.refund_amount), "refundUnlockAt": e.refund_unlock_at,
                "authorized": a(b.authorized), "owed": a(b.owed),
            })
        })
        .collect();
    out.print(
        json!({
            "user": summary.user, "wallet": a(summary.wallet), "balance": a(summary.balance),
            "voucherSigner": summary.voucher_signer, "escrows": escrows,
        }),
        || {
            let mut text = format!(
                "user     {}\nwallet   {} 0G\nledger   {} 0G (free)\n",
                summary.user,
                a(summary.wallet),
                a(summary.balance)
            );
            if let Some(s) = summary.voucher_signer {
                text += &format!("voucher signer {s}\n");
            }
            if summary.escrows.is_empty() {
                text += "no escrow yet: `zg-serving user fund --provider 0x... --amount 0.1`";
            }
            for e in &summary.escrows {
                let b = owed_at(e.provider);
                text += &format!(
                    "escrow at {}: {} 0G, settled {} 0G, owed by the book {} 0G",
                    e.provider,
                    a(e.escrow),
                    a(e.settled),
                    a(b.owed)
                );
                if !e.refund_amount.is_zero() {
                    text += &format!(
                        ", refund {} 0G unlocks at {}",
                        a(e.refund_amount),
                        e.refund_unlock_at
                    );
                }
                text += "\n";
            }
            text.trim_end().to_owned()
        },
    );
    Ok(())
}
