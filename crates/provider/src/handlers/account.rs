//! `GET /v1/account/{user}`: the signed statement of a user's account, so a
//! client that lost its voucher book can rebuild it.

use std::sync::Arc;

use axum::{
    Json,
    extract::{Path, State},
};
use zg_core::{AccountStatement, Address, SignedStatement};

use crate::{broker::Broker, error::ApiError, escrow::now_unix, store::Account};

pub async fn statement(
    State(broker): State<Arc<Broker>>,
    Path(user): Path<String>,
) -> Result<Json<SignedStatement>, ApiError> {
    let user: Address = user.parse().map_err(|_| {
        ApiError::invalid(format!(
            "{user:?} is not an address: expected 0x and 40 hex digits"
        ))
    })?;
    let account = broker
        .store
        .account(user)
        .await?
        .unwrap_or_else(|| Account::new(user));
    let statement = AccountStatement {
        provider: broker.provider,
        user,
        chain_id: broker.domain.chain_id,
        contract: broker.domain.contract,
        owed: account.owed,
        settled: account.settled,
        reserved: account.reserved,
        cumulative: account.cumulative(),
        request_digest: account.voucher.map(|(v, _)| v.request_digest),
        voucher_signature: account.voucher.map(|(_, s)| s.to_string()),
        at: now_unix(),
    };
    Ok(Json(SignedStatement::sign(&statement, &broker.signer)))
}
