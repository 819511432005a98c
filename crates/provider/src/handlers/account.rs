//! `GET /v1/account/{user}`: the signed statement of a user's account, so a
//! client that lost its voucher book can rebuild it. Answered only to the
//! user: the request is signed by the user or its delegated voucher signer
//! (`zg_core::StatementRequest`), anything else gets 401.

use std::sync::Arc;

use axum::{
    Json,
    extract::{Path, State},
    http::HeaderMap,
};
use zg_core::{AccountStatement, Address, ErrorCode, SignedStatement, StatementRequest, now_unix};

use crate::{admission::Tab, broker::Broker, error::ApiError};

pub(super) async fn statement(
    State(broker): State<Arc<Broker>>,
    Path(user): Path<String>,
    headers: HeaderMap,
) -> Result<Json<SignedStatement>, ApiError> {
    let user: Address = user.parse().map_err(|_| {
        ApiError::invalid(format!(
            "{user:?} is not an address: expected 0x and 40 hex digits"
        ))
    })?;
    authorize(&broker, user, &headers).await?;
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

/// The request must be a fresh `StatementRequest` for this user and this
/// provider, signed by the user or its delegated voucher signer.
async fn authorize(broker: &Broker, user: Address, headers: &HeaderMap) -> Result<(), ApiError> {
    let unauthorized = |why: String| ApiError::new(ErrorCode::Unauthorized, why);
    let signer =
        StatementRequest::signer(user, broker.provider, &broker.domain, now_unix(), |name| {
            headers.get(name).and_then(|v| v.to_str().ok())
        })
        .map_err(|e| unauthorized(e.to_string()))?;
    if broker.speaks_for(user, signer).await? {
        return Ok(());
    }
    Err(unauthorized(format!(
        "the statement request is signed by {signer}, which is neither {user} nor its delegated voucher signer: sign StatementRequest(user {user}, provider {}, timestamp) in domain zg-serving/1 chain {} contract {} with the user's key",
        broker.provider, broker.domain.chain_id, broker.domain.contract
    )))
}
