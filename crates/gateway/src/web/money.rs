//! The money page (`/`): wallet, ledger balance, voucher signer, each
//! escrow with what the book owes, and the four forms that move money on
//! chain (deposit, fund, refund, claim). An action first answers with what
//! it will do (function, amounts, from where to where, who pays gas), and
//! sends the transaction only when that is confirmed.

use super::{answer, banners, chain_read, frame, listed};
use crate::Gateway;
use axum::{
    Extension, Form,
    extract::{Path, State},
    http::StatusCode,
    response::Response,
};
use serde::Deserialize;
use std::{collections::BTreeSet, str::FromStr, sync::Arc, time::Duration};
use zg_chain::Outcome;
use zg_client::{Accounts, ClientError, LedgerSummary, Tab};
use zg_core::{Address, U256, parse_amount};
use zg_web::{Markup, Session, amount, confirm, html, notice, tx_link, unix_time};

/// How long an action waits for its transaction to be mined.
const TX_WAIT: Duration = Duration::from_secs(60);

pub(super) async fn page(
    State(gw): State<Arc<Gateway>>,
    Extension(session): Extension<Session>,
) -> Markup {
    let accounts = Accounts::new(gw.chain.clone());
    let (summary, tabs, services) = tokio::join!(
        chain_read(&gw, accounts.summary()),
        gw.payer.book().tabs(),
        listed(&gw),
    );
    let mut problems = Vec::new();
    let summary = summary.map_err(|e| problems.push(e)).ok();
    let tabs = tabs
        .map_err(|e| problems.push(format!("the book could not be read: {e}")))
        .unwrap_or_default();
    let providers: BTreeSet<Address> = services
        .map_err(|e| problems.push(e))
        .unwrap_or_default()
        .iter()
        .map(|s| s.provider)
        .collect();
    let figure = |value: Option<U256>| value.map_or("—".to_owned(), amount);
    let body = html! {
        (banners(&problems))
        section #figures .cards data-live="" {
            div.card {
                div.muted { "Wallet (gas and deposits)" }
                span #wallet .figure { (figure(summary.as_ref().map(|s| s.wallet))) }
                span.unit { " 0G" }
                div.addr { (accounts.user()) }
            }
            div.card {
                div.muted { "Ledger balance (free to fund escrow)" }
                span #balance .figure { (figure(summary.as_ref().map(|s| s.balance))) }
                span.unit { " 0G" }
            }
            div.card {
                div.muted { "Voucher signer" }
                div #voucher-signer .addr {
                    @match summary.as_ref().map(|s| s.voucher_signer) {
                        Some(Some(signer)) => (signer),
                        Some(None) => "the wallet itself",
                        None => "—",
                    }
                }
                div.muted { "signs this gateway's vouchers: " span.addr { (gw.payer.signer_address()) } }
            }
        }
        h2 { "Escrow per provider" }
        div.scroll {
            (escrows(summary.as_ref(), &tabs))
        }
        h2 { "Move money" }
        datalist #listed-providers {
            @for p in &providers { option value=(p) {} }
        }
        (forms(&session))
    };
    frame("Money · zg-serving gateway", "/", body)
}

fn escrows(summary: Option<&LedgerSummary>, tabs: &[Tab]) -> Markup {
    let owed = |p: Address| {
        tabs.iter()
            .find(|t| t.provider == p)
            .map(|t| t.owed)
            .unwrap_or_default()
    };
    let rows = summary.map(|s| s.escrows.as_slice()).unwrap_or_default();
    html! {
        table #escrows .sortable data-live="" {
            thead { tr {
                th { "Provider" } th.num { "Escrow (0G)" } th.num { "Settled (0G)" }
                th.num { "Owed by the book (0G)" } th { "Refund pending" }
            } }
            tbody {
                @for e in rows {
                    tr data-provider=(e.provider) {
                        td.addr { (e.provider) }
                        td.escrow.num data-sort=(e.escrow) { (amount(e.escrow)) }
                        td.settled.num data-sort=(e.settled) { (amount(e.settled)) }
                        td.owed.num data-sort=(owed(e.provider)) { (amount(owed(e.provider))) }
                        td.refund {
                            @if e.refund_amount.is_zero() { "—" } @else {
                                (amount(e.refund_amount)) " 0G, unlocks "
                                (unix_time(i64::try_from(e.refund_unlock_at).unwrap_or(i64::MAX)))
                            }
                        }
                    }
                }
                @if rows.is_empty() {
                    tr.empty { td colspan="5" .muted { "No escrow yet: fund a provider below." } }
                }
            }
        }
    }
}

fn forms(session: &Session) -> Markup {
    let provider = html! {
        label { "Provider" input name="provider" list="listed-providers" placeholder="0x…" required autocomplete="off"; }
    };
    let amount = |hint: &str| {
        html! { label { (hint) input name="amount" inputmode="decimal" placeholder="0.1" required autocomplete="off"; } }
    };
    html! {
        form #deposit .inline method="post" action="/actions/deposit" {
            (session.field())
            (amount("Deposit from the wallet (0G)"))
            button type="submit" { "Deposit" }
        }
        form #fund .inline method="post" action="/actions/fund" {
            (session.field())
            (provider)
            (amount("Fund its escrow (0G)"))
            button type="submit" { "Fund" }
        }
        form #refund .inline method="post" action="/actions/refund" {
            (session.field())
            (provider)
            (amount("Ask back from its escrow (0G)"))
            button type="submit" { "Request refund" }
        }
        form #claim .inline method="post" action="/actions/claim" {
            (session.field())
            (provider)
            button type="submit" { "Claim unlocked refund" }
        }
    }
}

/// An action's form, as posted.
#[derive(Debug, Default, Deserialize)]
pub(super) struct ActionForm {
    #[serde(default)]
    provider: String,
    #[serde(default)]
    amount: String,
    #[serde(default)]
    confirm: String,
}

/// One thing that moves money on chain.
#[derive(Debug, Clone, Copy)]
enum Action {
    Deposit(U256),
    Fund(Address, U256),
    Refund(Address, U256),
    Claim(Address),
}

impl Action {
    fn parse(kind: &str, form: &ActionForm) -> Result<Self, String> {
        let amount = || {
            let text = form.amount.trim();
            match parse_amount(text) {
                Ok(a) if a.is_zero() => Err("the amount must be above zero".to_owned()),
                Ok(a) => Ok(a),
                Err(e) => Err(format!(
                    "{text:?} is not an amount of 0G ({e}): write it in decimal, e.g. 0.01"
                )),
            }
        };
        let provider = || {
            let text = form.provider.trim();
            Address::from_str(text).map_err(|_| {
                format!("{text:?} is not a provider's address: 0x and 40 hex digits, as listed on the providers page")
            })
        };
        match kind {
            "deposit" => Ok(Self::Deposit(amount()?)),
            "fund" => Ok(Self::Fund(provider()?, amount()?)),
            "refund" => Ok(Self::Refund(provider()?, amount()?)),
            "claim" => Ok(Self::Claim(provider()?)),
            other => Err(format!(
                "there is no action {other:?}: deposit, fund, refund or claim"
            )),
        }
    }

    fn kind(self) -> &'static str {
        match self {
            Self::Deposit(_) => "deposit",
            Self::Fund(..) => "fund",
            Self::Refund(..) => "refund",
            Self::Claim(_) => "claim",
        }
    }

    fn provider(self) -> Option<Address> {
        match self {
            Self::Deposit(_) => None,
            Self::Fund(p, _) | Self::Refund(p, _) | Self::Claim(p) => Some(p),
        }
    }

    /// The form's fields, posted again to confirm.
    fn fields(self) -> Vec<(&'static str, String)> {
        let mut fields = Vec::new();
        if let Some(p) = self.provider() {
            fields.push(("provider", p.to_string()));
        }
        if let Self::Deposit(a) | Self::Fund(_, a) | Self::Refund(_, a) = self {
            fields.push(("amount", amount(a)));
        }
        fields
    }

    /// What the transaction will do, in the figures read just now.
    fn describe(self, gw: &Gateway, now: &Figures) -> String {
        let wallet = gw.chain.wallet();
        let contract = gw.chain.contract_address();
        let gas = format!("the wallet {wallet} pays the gas.");
        match self {
            Self::Deposit(a) => format!(
                "deposit(): sends {} 0G from your wallet {wallet} (now {}) into your ledger balance (now {}) in the contract {contract}; {gas}",
                amount(a),
                now.wallet(),
                now.balance()
            ),
            Self::Fund(p, a) => format!(
                "fund(provider, amount): moves {} 0G of your ledger balance (now {}) into escrow at {p} (now {}); {gas}",
                amount(a),
                now.balance(),
                now.escrow(p)
            ),
            Self::Refund(p, a) => format!(
                "requestRefund(provider, amount): asks back {} 0G of your escrow at {p} (now {}); it stays there until the contract's lock period has passed, then claim moves it to your ledger balance (now {}); {gas}",
                amount(a),
                now.escrow(p),
                now.balance()
            ),
            Self::Claim(p) => format!(
                "claimRefund(provider): moves your unlocked refund at {p} ({}) from escrow back to your ledger balance (now {}); {gas}",
                now.refund(p),
                now.balance()
            ),
        }
    }

    async fn send(self, accounts: &Accounts) -> Result<Outcome, ClientError> {
        match self {
            Self::Deposit(a) => accounts.deposit(a).await,
            Self::Fund(p, a) => accounts.fund(p, a).await,
            Self::Refund(p, a) => accounts.request_refund(p, a).await,
            Self::Claim(p) => accounts.claim_refund(p).await,
        }
    }
}

/// The figures an action changes, as read from the chain (None: unread).
struct Figures(Option<LedgerSummary>);

impl Figures {
    async fn read(gw: &Gateway) -> Self {
        Self(
            chain_read(gw, Accounts::new(gw.chain.clone()).summary())
                .await
                .ok(),
        )
    }

    fn show(&self, pick: impl Fn(&LedgerSummary) -> U256) -> String {
        self.0
            .as_ref()
            .map_or("unread: the chain did not answer".to_owned(), |s| {
                format!("{} 0G", amount(pick(s)))
            })
    }

    fn escrow_of(s: &LedgerSummary, p: Address) -> Option<&zg_client::accounts::EscrowView> {
        s.escrows.iter().find(|e| e.provider == p)
    }

    fn wallet(&self) -> String {
        self.show(|s| s.wallet)
    }

    fn balance(&self) -> String {
        self.show(|s| s.balance)
    }

    fn escrow(&self, p: Address) -> String {
        self.show(|s| Self::escrow_of(s, p).map(|e| e.escrow).unwrap_or_default())
    }

    fn refund(&self, p: Address) -> String {
        let amount = self.show(|s| {
            Self::escrow_of(s, p)
                .map(|e| e.refund_amount)
                .unwrap_or_default()
        });
        let unlock = self
            .0
            .as_ref()
            .and_then(|s| Self::escrow_of(s, p))
            .map(|e| e.refund_unlock_at);
        match unlock {
            Some(at) if at > 0 => format!(
                "{amount}, unlocking at {}",
                unix_time(i64::try_from(at).unwrap_or(i64::MAX))
            ),
            _ => amount,
        }
    }
}

/// `POST /actions/{action}`: the confirmation, or with `confirm=yes` the
/// transaction and what it changed.
pub(super) async fn act(
    State(gw): State<Arc<Gateway>>,
    Path(kind): Path<String>,
    Extension(session): Extension<Session>,
    Form(form): Form<ActionForm>,
) -> Response {
    let title = "Money · zg-serving gateway";
    let action = match Action::parse(&kind, &form) {
        Ok(action) => action,
        Err(why) => {
            let body = notice(false, html! { p #error-text { (why) } }, "/");
            return answer(StatusCode::BAD_REQUEST, title, "/", body);
        }
    };
    let before = Figures::read(&gw).await;
    if form.confirm != "yes" {
        let what = html! { (action.describe(&gw, &before)) };
        let body = confirm(
            &session,
            what,
            &format!("/actions/{kind}"),
            &action.fields(),
            "/",
        );
        return answer(StatusCode::OK, title, "/", body);
    }
    let accounts = Accounts::new(gw.chain.clone());
    let url = gw.chain.rpc_url();
    let sent = match tokio::time::timeout(TX_WAIT, action.send(&accounts)).await {
        Ok(Ok(outcome)) => outcome,
        Ok(Err(e)) => {
            let status = match e {
                ClientError::Budget(_) | ClientError::InvalidRequest(_) => StatusCode::BAD_REQUEST,
                _ => StatusCode::BAD_GATEWAY,
            };
            let body = notice(
                false,
                html! { p #error-text { (action.kind()) " was not done: " (e) } },
                "/",
            );
            return answer(status, title, "/", body);
        }
        Err(_) => {
            let body = notice(
                false,
                html! { p #error-text {
                    "The chain at " (url) " did not confirm the " (action.kind()) " within "
                    (TX_WAIT.as_secs()) " s. The transaction may still land: check the figures before trying again."
                } },
                "/",
            );
            return answer(StatusCode::GATEWAY_TIMEOUT, title, "/", body);
        }
    };
    gw.live.bump();
    let after = Figures::read(&gw).await;
    let explorer = gw.config.explorer_url.as_deref();
    let changed = |what: &str, was: String, now: String| {
        html! { li { (what) ": " (was) " → " (now) } }
    };
    let body = notice(
        true,
        html! {
            p { (action.kind()) " done in block " (sent.block) ", gas " (amount(sent.fee)) " 0G paid by " (gw.chain.wallet()) "." }
            p #tx { "Transaction " (tx_link(explorer, &sent.tx_hash.to_string())) }
            ul #changed {
                @if let Action::Deposit(_) = action {
                    (changed("wallet", before.wallet(), after.wallet()))
                }
                (changed("ledger balance", before.balance(), after.balance()))
                @if let Some(p) = action.provider() {
                    (changed(&format!("escrow at {p}"), before.escrow(p), after.escrow(p)))
                    @if matches!(action, Action::Refund(..) | Action::Claim(_)) {
                        (changed("refund pending", before.refund(p), after.refund(p)))
                    }
                }
            }
        },
        "/",
    );
    answer(StatusCode::OK, title, "/", body)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn form(provider: &str, amount: &str) -> ActionForm {
        ActionForm {
            provider: provider.into(),
            amount: amount.into(),
            confirm: String::new(),
        }
    }

    #[test]
    fn actions_parse_exact_amounts_and_refuse_bad_input_with_a_reason() {
        let p = "0x00000000000000000000000000000000000000aa";
        let Ok(Action::Fund(addr, a)) = Action::parse("fund", &form(p, "0.01")) else {
            panic!("fund parses");
        };
        assert_eq!(addr, Address::from_str(p).unwrap());
        assert_eq!(a, U256::from(10_000_000_000_000_000u64));
        assert_eq!(
            Action::parse("fund", &form(p, "0.01")).unwrap().fields(),
            [
                ("provider", addr.to_string()),
                ("amount", "0.01".to_owned())
            ]
        );
        for (kind, provider, amount) in [
            ("fund", p, "abc"),
            ("fund", p, "0"),
            ("fund", p, "-1"),
            ("fund", "0x12", "1"),
            ("refund", "", "1"),
            ("deposit", "", "1.0000000000000000001"),
            ("withdraw", p, "1"),
        ] {
            let e = Action::parse(kind, &form(provider, amount)).unwrap_err();
            assert!(!e.is_empty(), "{kind} {provider} {amount}");
        }
        assert!(matches!(
            Action::parse("claim", &form(p, "")),
            Ok(Action::Claim(_))
        ));
    }
}
