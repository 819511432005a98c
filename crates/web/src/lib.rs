//! zg-web: what the gateway's user page and the broker's provider page
//! share. Pages are server-rendered HTML ([`maud`], escaped by default) with
//! every asset embedded in the binary (no build step, no network at run
//! time). `session`: the admin token, a session cookie, and cross-site
//! request checks on every action; `layout`: the page frame, navigation,
//! confirmations and transaction links; `live`: server-sent events that
//! tell an open page to refresh its figures; `chart`: line charts drawn as
//! SVG on the server.

mod chart;
mod layout;
mod live;
mod session;

pub use chart::{Series, line_chart};
pub use layout::{Nav, Page, amount, confirm, notice, secure, tx_link, unix_time};
pub use live::Live;
// `html!` expands to paths under `::maud`: a crate that writes pages lists
// `maud` among its own dependencies too.
pub use maud::{self, Markup, PreEscaped, html};
pub use session::{Admin, Session, public_routes};

/// A fresh random secret (hex), for an admin token no one configured.
pub fn random_token() -> String {
    hex::encode(rand::random::<[u8; 16]>())
}
