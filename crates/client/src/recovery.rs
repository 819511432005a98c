//! Recovery of the voucher book after the local file is lost: for each
//! provider the user has escrow at (read from the chain), ask the broker for
//! its signed account statement (a request the user signs), check it (signer from the registry, user,
//! provider, chain and contract, the newest voucher really signed by the user
//! or its delegated signer, and settled on chain never above it), and restore
//! the account from it.

use crate::{ClientError, book::Tab, discovery, pay::endpoint};
use serde::Serialize;
use zg_chain::ChainClient;
use zg_core::{Address, SignedStatement, U256, Voucher, wire::routes};

/// What recovery restored for one provider.
#[derive(Debug, Clone, Serialize)]
pub struct Recovered {
    pub provider: Address,
    /// The newest voucher the provider holds, checked against the user's signature.
    pub authorized: U256,
    /// What the provider says is owed; `owed - authorized` is fees not yet
    /// covered by any voucher, which the next voucher will pay.
    pub owed: U256,
    /// Settled on chain.
    pub settled: U256,
}

/// Rebuilds the book of `payer`'s user at every provider it has escrow at.
pub async fn recover(
    payer: &crate::Payer,
    chain: &ChainClient,
) -> Result<Vec<Recovered>, ClientError> {
    let user = payer.user();
    let mut providers = Vec::new();
    loop {
        let page = chain
            .accounts_of_user(user, providers.len() as u64, 100)
            .await?;
        let got = page.items.len();
        providers.extend(page.items);
        if got == 0 || providers.len() as u64 >= page.total {
            break;
        }
    }
    let services = discovery::all_services(chain).await?;
    let mut out = Vec::new();
    for escrow in providers {
        let Some(service) = services.iter().find(|s| s.provider == escrow.provider) else {
            tracing::warn!(provider = %escrow.provider, "no listed service left to ask for a statement");
            continue;
        };
        let recovered = recover_one(
            payer,
            &service.url,
            service.signer,
            escrow.provider,
            escrow.settled,
        )
        .await?;
        out.push(recovered);
    }
    Ok(out)
}

/// Asks the broker at `url` for the user's statement (a request signed with
/// the payer's voucher key: the statement is the user's alone). Unchecked:
/// [`SignedStatement::verify`] says whether the registered signer signed it.
pub async fn statement(
    payer: &crate::Payer,
    url: &str,
    provider: Address,
) -> Result<SignedStatement, ClientError> {
    let mut request = payer
        .http()
        .get(endpoint(url, &routes::account(payer.user())));
    for (name, value) in payer.statement_request(provider) {
        request = request.header(name, value);
    }
    let response = request.send().await.map_err(|e| ClientError::Unreachable {
        provider,
        url: url.to_owned(),
        reason: e.to_string(),
    })?;
    if !response.status().is_success() {
        return Err(crate::pay::refused(provider, response).await);
    }
    response
        .json()
        .await
        .map_err(|e| ClientError::BadStatement {
            provider,
            reason: format!("not a signed statement: {e}"),
        })
}

/// Restores one provider's account from the statement at `url`, signed by `signer`.
pub async fn recover_one(
    payer: &crate::Payer,
    url: &str,
    signer: Address,
    provider: Address,
    settled_on_chain: U256,
) -> Result<Recovered, ClientError> {
    let user = payer.user();
    let bad = |reason: String| ClientError::BadStatement { provider, reason };
    let signed = statement(payer, url, provider).await?;
    let statement = signed.verify(signer).map_err(|e| bad(e.to_string()))?;
    let domain = payer.domain();
    if statement.user != user || statement.provider != provider {
        return Err(bad(format!(
            "it is for user {} at provider {}, expected {user} at {provider}",
            statement.user, statement.provider
        )));
    }
    if statement.chain_id != domain.chain_id || statement.contract != domain.contract {
        return Err(bad(format!(
            "it is for chain {} contract {}, this deployment is chain {} contract {}",
            statement.chain_id, statement.contract, domain.chain_id, domain.contract
        )));
    }
    // The provider's word is only taken for what the user's own signature backs.
    let authorized = match (&statement.request_digest, &statement.voucher_signature) {
        (Some(digest), Some(signature)) => {
            let voucher = Voucher {
                user,
                provider,
                cumulative: statement.cumulative,
                request_digest: *digest,
            };
            let signature = signature
                .parse()
                .map_err(|e| bad(format!("voucher signature: {e}")))?;
            let got = voucher
                .signer(&signature, &domain)
                .map_err(|e| bad(e.to_string()))?;
            if got != user && got != payer.signer_address() {
                return Err(bad(format!(
                    "its newest voucher is signed by {got}, not by the user or its voucher signer"
                )));
            }
            statement.cumulative
        }
        _ if statement.cumulative.is_zero() => U256::ZERO,
        _ => return Err(bad("it claims a voucher but does not show it".into())),
    };
    if settled_on_chain > authorized {
        return Err(bad(format!(
            "settled on chain {settled_on_chain} is above the newest voucher {authorized}"
        )));
    }
    if statement.owed < authorized {
        return Err(bad(format!(
            "owed {} is below the newest voucher {authorized}",
            statement.owed
        )));
    }
    let book = payer.book();
    let current = book.tab(provider).await?;
    let tab = Tab {
        provider,
        authorized: authorized.max(current.authorized),
        owed: statement.owed.max(current.owed),
    };
    book.restore(tab).await?;
    Ok(Recovered {
        provider,
        authorized: tab.authorized,
        owed: tab.owed,
        settled: settled_on_chain,
    })
}
