//! Live figures: an open page listens to server-sent events and re-reads
//! its `data-live` parts on each "refresh". A side bumps its [`Live`] when
//! something it knows changed (a receipt, a settlement); a tick covers what
//! changes elsewhere (the chain), so a page is never more than `tick` old.

use axum::response::sse::{Event, KeepAlive, Sse};
use futures::Stream;
use std::{convert::Infallible, time::Duration};
use tokio::sync::watch;

/// What tells open pages to refresh.
#[derive(Debug)]
pub struct Live {
    changes: watch::Sender<u64>,
    tick: Duration,
}

impl Live {
    pub fn new(tick: Duration) -> Self {
        Self {
            changes: watch::Sender::new(0),
            tick,
        }
    }

    /// Something changed: every open page refreshes.
    pub fn bump(&self) {
        self.changes.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// The event stream of one open page.
    pub fn events(&self) -> Sse<impl Stream<Item = Result<Event, Infallible>> + use<>> {
        let state = (self.changes.subscribe(), self.tick);
        let stream = futures::stream::unfold(state, |(mut rx, tick)| async move {
            tokio::select! {
                changed = rx.changed() => {
                    if changed.is_err() {
                        // The side stopped: end the stream (the page says so).
                        return None;
                    }
                }
                () = tokio::time::sleep(tick) => {}
            }
            let event = Event::default().event("refresh").data("");
            Some((Ok(event), (rx, tick)))
        });
        Sse::new(stream).keep_alive(KeepAlive::default())
    }
}
