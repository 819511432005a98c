//! Concurrent requests to one provider never sign conflicting vouchers: the
//! provider refuses a cumulative below one it accepted, and requests can
//! arrive in any order, so every request of an *epoch* carries the same
//! cumulative. An epoch starts when a request finds none in flight, at the
//! tally then; after [`EPOCH_MAX`] requests (or once closed), new ones wait
//! for the epoch's to finish, which bounds what is owed beyond the newest
//! voucher. A request alone in flight from start to receipt has its
//! receipt's `owed` checked exactly; one with company, as at least its own
//! fee above the tally when it was sent; and when an epoch ends, the highest
//! `owed` its receipts claimed must not exceed the tally.

use super::Tab;
use std::sync::{Arc, Mutex, MutexGuard};
use zg_core::{Address, U256};

/// Requests sent to one provider with the same voucher cumulative before
/// new ones wait for them to finish.
pub const EPOCH_MAX: u32 = 64;

/// One provider's page, in memory while the book is open.
pub(super) struct Page {
    pub tab: Tab,
    in_flight: u32,
    /// The cumulative the vouchers of the current epoch carry.
    epoch: U256,
    signed_in_epoch: u32,
    /// The epoch takes no new requests (the provider's credit limit).
    closed: bool,
    /// Requests begun so far (tells a request whether another began after it).
    begun: u64,
    /// Highest `owed` the current epoch's paid receipts claimed.
    max_owed: U256,
}

impl Page {
    /// Whether no request to the provider is in flight.
    pub(super) fn quiet(&self) -> bool {
        self.in_flight == 0
    }

    /// Adds a paid receipt's fee to the tally.
    pub(super) fn paid(&mut self, fee: U256, claimed_owed: U256) {
        self.tab.owed = self.tab.owed.saturating_add(fee);
        self.max_owed = self.max_owed.max(claimed_owed);
    }

    /// After the tab changed outside a request (acknowledgement,
    /// recovery): a quiet page's next epoch starts from what it authorized.
    pub(super) fn reset_epoch(&mut self) {
        if self.quiet() {
            self.epoch = self.tab.authorized;
        }
    }
}

/// One provider's page and the wake-up for requests waiting on its epoch.
pub(super) struct Slot {
    provider: Address,
    page: Mutex<Page>,
    /// Woken when the provider's requests in flight drop to none.
    idle: tokio::sync::Notify,
}

impl Slot {
    pub(super) fn new(tab: Tab) -> Self {
        Self {
            provider: tab.provider,
            page: Mutex::new(Page {
                tab,
                in_flight: 0,
                epoch: tab.authorized,
                signed_in_epoch: 0,
                closed: false,
                begun: 0,
                max_owed: tab.owed,
            }),
            idle: tokio::sync::Notify::new(),
        }
    }

    pub(super) fn lock(&self) -> MutexGuard<'_, Page> {
        self.page.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Starts a request: the cumulative its voucher carries. Waits while
    /// the current epoch is full or closed.
    pub(super) async fn begin(self: &Arc<Self>) -> Ticket {
        loop {
            let idle = self.idle.notified();
            if let Some(ticket) = self.try_begin() {
                return ticket;
            }
            idle.await;
        }
    }

    fn try_begin(self: &Arc<Self>) -> Option<Ticket> {
        let mut p = self.lock();
        if p.quiet() {
            p.epoch = p.tab.owed.max(p.epoch);
            p.signed_in_epoch = 0;
            p.closed = false;
            p.max_owed = p.tab.owed;
        }
        if p.signed_in_epoch >= EPOCH_MAX || p.closed {
            return None;
        }
        let alone_at_start = p.quiet();
        p.in_flight += 1;
        p.signed_in_epoch += 1;
        p.begun += 1;
        p.tab.authorized = p.tab.authorized.max(p.epoch);
        Some(Ticket {
            slot: self.clone(),
            cumulative: p.epoch,
            owed_at_start: p.tab.owed,
            begun: p.begun,
            alone_at_start,
        })
    }
}

/// How a receipt's `owed` is checked against the client's tally.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OwedBefore {
    /// The request was alone in flight: the provider was owed exactly this.
    Exact(U256),
    /// Others were in flight too: the provider was owed at least this.
    AtLeast(U256),
}

/// One request in flight to a provider, from its voucher to its receipt.
/// Dropping it ends the request (and maybe the epoch).
pub struct Ticket {
    pub(super) slot: Arc<Slot>,
    cumulative: U256,
    owed_at_start: U256,
    begun: u64,
    alone_at_start: bool,
}

impl Ticket {
    /// The voucher's cumulative.
    pub fn cumulative(&self) -> U256 {
        self.cumulative
    }

    pub fn provider(&self) -> Address {
        self.slot.provider
    }

    /// Ends this request's epoch early: new requests wait until the ones in
    /// flight are done, then carry the tally (the provider refused a
    /// voucher this far below what it is owed: its credit limit).
    pub fn close_epoch(&self) {
        self.slot.lock().closed = true;
    }

    /// How this request's receipt is to be checked, as of now.
    pub fn owed_before(&self) -> OwedBefore {
        let p = self.slot.lock();
        if self.alone_at_start && p.begun == self.begun {
            OwedBefore::Exact(p.tab.owed)
        } else {
            OwedBefore::AtLeast(self.owed_at_start)
        }
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        let mut p = self.slot.lock();
        p.in_flight = p.in_flight.saturating_sub(1);
        if !p.quiet() {
            return;
        }
        if p.max_owed > p.tab.owed {
            tracing::warn!(
                provider = %self.slot.provider, claimed = %p.max_owed, tally = %p.tab.owed,
                "the provider's receipts claim more owed than they add up to"
            );
        }
        drop(p);
        self.slot.idle.notify_waiters();
    }
}
