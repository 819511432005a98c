//! Acknowledgement vouchers: after a good receipt, a voucher whose
//! cumulative is the tally and whose requestDigest is the receipt's EIP-712
//! hash, so the provider holds a voucher for everything it answered. Sent
//! right away (`AckPolicy::Immediate`), once the provider went idle
//! (`AckPolicy::WhenIdle`: one timer per provider, and a busy one needs
//! none, the next request's voucher pays), or never.

use super::{Payer, endpoint, refused, unreachable};
use crate::ClientError;
use std::{
    collections::HashMap,
    time::{Duration, Instant},
};
use zg_core::{AckBody, Address, B256, Service, Voucher, headers::SignedReceipt, wire::routes};

/// When to send an acknowledgement voucher after a good receipt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AckPolicy {
    /// Right after the check (one-shot tools: the CLI).
    Immediate,
    /// When no other request went to the provider for this long: the next
    /// request's voucher pays the fee anyway, so a busy gateway sends none.
    WhenIdle(Duration),
    Never,
}

/// The newest good receipt of a provider not yet acknowledged, and when.
pub(super) struct IdleAck {
    service: Service,
    receipt_hash: B256,
    due: Instant,
}

impl Payer {
    /// Acknowledges a good receipt as the payer's policy says.
    pub(super) async fn acknowledge_as_policy(&self, service: &Service, signed: &SignedReceipt) {
        let after = match self.inner.ack {
            AckPolicy::Never => return,
            AckPolicy::Immediate => None,
            AckPolicy::WhenIdle(after) => Some(after),
        };
        let receipt_hash = signed.receipt.signing_hash(&self.inner.domain);
        match after {
            Some(after) => self.ack_when_idle(service.clone(), receipt_hash, after),
            None => {
                if let Err(e) = self.acknowledge(service, receipt_hash).await {
                    tracing::warn!(provider = %service.provider, error = %e, "acknowledgement voucher failed");
                }
            }
        }
    }

    /// Notes the newest good receipt for a provider; one timer per provider
    /// (not one per request) acknowledges it once the provider went idle.
    fn ack_when_idle(&self, service: Service, receipt_hash: B256, after: Duration) {
        let provider = service.provider;
        let pending = IdleAck {
            service,
            receipt_hash,
            due: Instant::now() + after,
        };
        let first = self.idle().insert(provider, pending).is_none();
        if first {
            let payer = self.clone();
            tokio::spawn(async move { payer.acknowledge_when_due(provider).await });
        }
    }

    async fn acknowledge_when_due(&self, provider: Address) {
        let pending = loop {
            let due = match self.idle().get(&provider) {
                Some(p) => p.due,
                None => return,
            };
            if due > Instant::now() {
                tokio::time::sleep_until(due.into()).await;
                continue;
            }
            match self.idle().remove(&provider) {
                Some(p) => break p,
                None => return,
            }
        };
        if let Err(e) = self
            .acknowledge(&pending.service, pending.receipt_hash)
            .await
        {
            tracing::warn!(%provider, error = %e, "acknowledgement voucher failed");
        }
    }

    fn idle(&self) -> std::sync::MutexGuard<'_, HashMap<Address, IdleAck>> {
        self.inner.idle.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Signs and posts an acknowledgement voucher: cumulative = the tally,
    /// bound to the receipt `receipt_hash`. Only while no request to the
    /// provider is in flight (a higher cumulative would make the provider
    /// refuse their vouchers); the next request's voucher pays otherwise.
    async fn acknowledge(&self, service: &Service, receipt_hash: B256) -> Result<(), ClientError> {
        let Some(account) = self.inner.book.quiet_tab(service.provider).await? else {
            return Ok(());
        };
        if account.authorized >= account.owed {
            return Ok(());
        }
        let voucher = Voucher {
            user: self.inner.user,
            provider: service.provider,
            cumulative: account.owed,
            request_digest: receipt_hash,
        };
        let signature = voucher.sign(&self.inner.key, &self.inner.domain);
        let body = AckBody {
            voucher,
            signature: signature.to_string(),
        };
        let response = self
            .inner
            .http
            .post(endpoint(&service.url, routes::VOUCHERS))
            .json(&body)
            .send()
            .await
            .map_err(|e| unreachable(service, e))?;
        if !response.status().is_success() {
            return Err(refused(service.provider, response).await);
        }
        self.inner
            .book
            .authorize(service.provider, account.owed)
            .await
    }
}
