//! `GET /v1/account/{user}`: the signed statement of a user's account, so a
//! client that lost its voucher book can rebuild it.

use std::sync::Arc;

use axum::{
    Json,
    extract::{Path, State},
};
use zg_core::{AccountStatement, Address, SignedStatement, now_unix};

use crate::{admission::Tab, broker::Broker, error::ApiError};

pub(super) async fn statement(
    State(broker): State<Arc<Broker>>,
    Path(user): Path<String>,
) -> Result<Json<SignedStatement>, ApiError> {
    let user: Address = user.parse().map_err(|_| {
        ApiError::invalid(format!(
            "{user:?} is not an address: expected 0x and 40 hex digits"
        ))
    })?;
    let tab = broker
        .store
        .tab(user)
        .await?
        .unwrap_or_else(|| Tab::new(user));
    let statement = AccountStatement {
        provider: broker.provider,
        user,
        chain_id: broker.domain.chain_id,
        contract: broker.domain.contract,
        owed: tab.owed,
        settled: tab.settled,
        reserved: tab.reserved,
        cumulative: tab.cumulative(),
        request_digest: tab.voucher.map(|(v, _)| v.request_digest),
        voucher_signature: tab.voucher.map(|(_, s)| s.to_string()),
        at: now_unix(),
    };
    Ok(Json(SignedStatement::sign(&statement, &broker.signer)))
}
