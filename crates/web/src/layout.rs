//! The frame of every page: head, navigation, the live-refresh hook, and
//! the small pieces pages share (amounts, times, transaction links,
//! confirmations), plus the embedded assets and the security headers.

use crate::session::Session;
use axum::{
    extract::Path,
    http::{HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use maud::{DOCTYPE, Markup, html};
use zg_core::{U256, format_amount};

const CSS: &str = include_str!("assets/app.css");
const JS: &str = include_str!("assets/app.js");

/// A side's navigation: (element id, path, label) per link.
#[derive(Clone, Copy, Debug)]
pub struct Nav {
    pub brand: &'static str,
    pub links: &'static [(&'static str, &'static str, &'static str)],
    /// The path of the page shown.
    pub active: &'static str,
}

/// One page being rendered.
#[derive(Debug)]
pub struct Page {
    title: String,
    nav: Option<Nav>,
    events: Option<&'static str>,
    scripts: Vec<&'static str>,
}

impl Page {
    /// A page with the side's navigation and a log-out button.
    pub fn new(title: impl Into<String>, nav: Nav) -> Self {
        Self {
            title: title.into(),
            nav: Some(nav),
            events: None,
            scripts: Vec::new(),
        }
    }

    /// A page without navigation (the login page).
    pub fn bare(title: impl Into<String>) -> Self {
        Self {
            title: title.into(),
            nav: None,
            events: None,
            scripts: Vec::new(),
        }
    }

    /// Elements with an id and `data-live` are re-read from the server
    /// whenever the event source at `events` says "refresh".
    pub fn live(mut self, events: &'static str) -> Self {
        self.events = Some(events);
        self
    }

    /// One more script of the side's (served by the side itself).
    pub fn script(mut self, src: &'static str) -> Self {
        self.scripts.push(src);
        self
    }

    pub fn render(self, body: Markup) -> Markup {
        html! {
            (DOCTYPE)
            html lang="en" {
                head {
                    meta charset="utf-8";
                    meta name="viewport" content="width=device-width, initial-scale=1";
                    title { (self.title) }
                    link rel="stylesheet" href="/assets/app.css";
                    script src="/assets/app.js" defer {}
                    @for src in &self.scripts { script src=(src) defer {} }
                }
                body data-events=[self.events] {
                    header.top {
                        @if let Some(nav) = self.nav {
                            span.brand { (nav.brand) }
                            nav {
                                @for (id, href, label) in nav.links {
                                    a id=(id) href=(href) aria-current=[(*href == nav.active).then_some("page")] { (label) }
                                }
                            }
                            span #live-state .muted title="live updates" {}
                            form.logout method="post" action="/logout" { button type="submit" { "Log out" } }
                        } @else {
                            span.brand { (self.title) }
                        }
                    }
                    main { (body) }
                }
            }
        }
    }
}

/// An amount of neuron as decimal 0G, exactly (what the CLI prints).
pub fn amount(value: U256) -> String {
    format_amount(value)
}

/// A unix time as `YYYY-MM-DD HH:MM:SS UTC`.
pub fn unix_time(t: i64) -> String {
    let (days, secs) = (t.div_euclid(86_400), t.rem_euclid(86_400));
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02} UTC",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

/// A transaction hash, linked to the explorer when one is configured.
pub fn tx_link(explorer: Option<&str>, hash: &str) -> Markup {
    html! {
        @match explorer {
            Some(base) => a.tx href=(format!("{}/tx/{hash}", base.trim_end_matches('/'))) rel="noreferrer" target="_blank" { (hash) },
            None => code.tx { (hash) },
        }
    }
}

/// The page that says what an action will do on chain before it is done:
/// confirming posts `fields` again to `action` with `confirm=yes`.
pub fn confirm(
    session: &Session,
    what: Markup,
    action: &str,
    fields: &[(&str, String)],
    back: &str,
) -> Markup {
    html! {
        section.card {
            h2 { "Confirm" }
            p #confirm-text { (what) }
            form method="post" action=(action) {
                (session.field())
                @for (name, value) in fields { input type="hidden" name=(name) value=(value); }
                input type="hidden" name="confirm" value="yes";
                button #confirm type="submit" { "Confirm and send" }
                " "
                a href=(back) { "Cancel" }
            }
        }
    }
}

/// The outcome of an action: `ok` or an error, with what follows.
pub fn notice(ok: bool, body: Markup, back: &str) -> Markup {
    html! {
        section.card #result .(if ok { "ok" } else { "error" }) role="status" {
            (body)
            p { a href=(back) { "Back" } }
        }
    }
}

pub(crate) async fn asset(Path(name): Path<String>) -> Response {
    let (body, kind) = match name.as_str() {
        "app.css" => (CSS, "text/css; charset=utf-8"),
        "app.js" => (JS, "text/javascript; charset=utf-8"),
        _ => return StatusCode::NOT_FOUND.into_response(),
    };
    (
        [
            (header::CONTENT_TYPE, kind),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}

/// Headers every page response carries: no inline or foreign scripts, no
/// framing (a framed confirm button could be clicked by another site).
pub async fn secure(mut response: Response) -> Response {
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; form-action 'self'",
        ),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    // Not `no-referrer`: under it Chromium sends `Origin: null` with the
    // page's own form posts, which the origin check must refuse.
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unix_times_read_as_dates() {
        assert_eq!(unix_time(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(unix_time(1_795_000_000), "2026-11-18 11:06:40 UTC");
        assert_eq!(unix_time(951_782_400), "2000-02-29 00:00:00 UTC");
    }
}
