//! `POST /v1/vouchers`: acknowledgement vouchers. A client that checked a
//! receipt signs a voucher whose requestDigest is the receipt's EIP-712 hash
//! and whose cumulative covers it, so the fee is not owed on credit.

use std::sync::Arc;

use axum::{Json, extract::State};
use bytes::Bytes;
use serde_json::{Value, json};
use zg_core::{AckBody, ErrorCode, Signature};

use crate::{broker::Broker, error::ApiError, store::Ack};

pub(super) async fn ack(
    State(broker): State<Arc<Broker>>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let body: AckBody = serde_json::from_slice(&body).map_err(|e| {
        ApiError::invalid(format!(
            "expected {{\"voucher\": {{user, provider, cumulative, requestDigest}}, \"signature\": \"0x...\"}}: {e}"
        ))
    })?;
    let signature: Signature = body
        .signature
        .parse()
        .map_err(|e| ApiError::new(ErrorCode::VoucherInvalid, format!("signature: {e}")))?;
    let voucher = body.voucher;
    if voucher.provider != broker.provider {
        return Err(ApiError::new(
            ErrorCode::VoucherInvalid,
            format!(
                "the voucher names provider {}, this is {}",
                voucher.provider, broker.provider
            ),
        ));
    }
    broker.check_signature(&voucher, &signature).await?;
    broker
        .store
        .ack(&Ack { voucher, signature })
        .await?
        .map_err(|r| r.into_api(voucher.user, broker.provider))?;
    Ok(Json(
        json!({ "accepted": true, "cumulative": voucher.cumulative.to_string() }),
    ))
}
