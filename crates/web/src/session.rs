//! The admin token and the sessions it opens. A browser logs in once with
//! the token (POST /login) and gets an HttpOnly, SameSite=Strict cookie; a
//! script may instead send `Authorization: Bearer <token>`. Every page needs
//! one or the other: a page asked without it goes to /login, anything else
//! gets 401. A state-changing request from a browser session must also
//! carry the session's CSRF token (a hidden field every form holds) and,
//! when the browser sends one, an Origin of this very host, so no other
//! site can make a logged-in browser move money.

use crate::layout::{Page, asset};
use axum::{
    Form, Router,
    extract::{Request, State},
    http::{HeaderMap, Method, StatusCode, header},
    middleware::Next,
    response::{IntoResponse, Redirect, Response},
    routing::get,
};
use maud::{Markup, html};
use serde::Deserialize;
use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

/// The session cookie's name starts so; each server adds its own suffix,
/// since browsers share cookies between ports of one host (a gateway and
/// two brokers on 127.0.0.1 must not log each other out).
const COOKIE: &str = "zg_admin_";
/// Sessions kept at most; the oldest goes when a new one would pass it.
const MAX_SESSIONS: usize = 256;

/// The token that guards one side's pages, and the sessions it opened.
pub struct Admin {
    token: String,
    cookie: String,
    title: &'static str,
    sessions: Mutex<Sessions>,
}

#[derive(Default)]
struct Sessions {
    csrf: HashMap<String, String>,
    order: Vec<String>,
}

/// The caller's session, for pages that write forms (their CSRF field).
#[derive(Clone, Debug)]
pub struct Session {
    csrf: String,
}

impl Session {
    /// The hidden field every form that changes something carries.
    pub fn field(&self) -> Markup {
        html! { input type="hidden" name="csrf" value=(self.csrf); }
    }

    /// The token itself, for a script that posts (as the `csrf` field).
    pub fn token(&self) -> &str {
        &self.csrf
    }
}

impl Admin {
    /// `title` names the side on the login page ("zg-serving gateway").
    pub fn new(token: String, title: &'static str) -> Arc<Self> {
        Arc::new(Self {
            token,
            cookie: format!("{COOKIE}{}", &crate::random_token()[..8]),
            title,
            sessions: Mutex::new(Sessions::default()),
        })
    }

    fn sessions(&self) -> std::sync::MutexGuard<'_, Sessions> {
        self.sessions.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn token_matches(&self, given: &str) -> bool {
        let (a, b) = (self.token.as_bytes(), given.trim().as_bytes());
        // Constant time over the token's length: no early exit on the first difference.
        a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
    }

    fn open_session(&self) -> String {
        let (id, csrf) = (crate::random_token(), crate::random_token());
        let mut s = self.sessions();
        if s.order.len() >= MAX_SESSIONS {
            let oldest = s.order.remove(0);
            s.csrf.remove(&oldest);
        }
        s.order.push(id.clone());
        s.csrf.insert(id.clone(), csrf);
        id
    }

    fn session_of(&self, headers: &HeaderMap) -> Option<Session> {
        let id = cookie(headers, &self.cookie)?;
        let csrf = self.sessions().csrf.get(id)?.clone();
        Some(Session { csrf })
    }

    fn close_session(&self, headers: &HeaderMap) {
        if let Some(id) = cookie(headers, &self.cookie) {
            let mut s = self.sessions();
            s.csrf.remove(id);
            s.order.retain(|o| o != id);
        }
    }

    /// Middleware: lets a request through with a session or the bearer
    /// token (and, for a browser's writes, the CSRF checks); the request
    /// gets its [`Session`] as an extension.
    pub async fn guard(State(admin): State<Arc<Admin>>, mut req: Request, next: Next) -> Response {
        let headers = req.headers();
        let bearer = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        if let Some(given) = bearer {
            if !admin.token_matches(given) {
                return refuse(StatusCode::UNAUTHORIZED, "wrong admin token");
            }
            // A script with the token: no cookie, so no cross-site risk.
            let csrf = crate::random_token();
            req.extensions_mut().insert(Session { csrf });
            return next.run(req).await;
        }
        let Some(session) = admin.session_of(headers) else {
            return if req.method() == Method::GET || req.method() == Method::HEAD {
                Redirect::to("/login").into_response()
            } else {
                refuse(
                    StatusCode::UNAUTHORIZED,
                    "this needs the admin token: log in at /login or send Authorization: Bearer <token>",
                )
            };
        };
        let writes = !matches!(*req.method(), Method::GET | Method::HEAD);
        if writes {
            if !same_origin(headers) {
                return refuse(StatusCode::FORBIDDEN, "cross-site request refused");
            }
            // The CSRF field travels in a form body or, for scripts, a header.
            let given = headers
                .get("x-csrf-token")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            let (parts, body) = req.into_parts();
            let Ok(bytes) = axum::body::to_bytes(body, 1 << 20).await else {
                return refuse(StatusCode::PAYLOAD_TOO_LARGE, "form too large");
            };
            let field = form_field(&bytes, "csrf");
            if given.or(field).as_deref() != Some(session.csrf.as_str()) {
                return refuse(
                    StatusCode::FORBIDDEN,
                    "this form is stale or from another site: reload the page and try again",
                );
            }
            req = Request::from_parts(parts, axum::body::Body::from(bytes));
        }
        req.extensions_mut().insert(session);
        next.run(req).await
    }
}

/// /login, /logout and the embedded assets: the routes that need no session.
pub fn public_routes<S: Clone + Send + Sync + 'static>(admin: Arc<Admin>) -> Router<S> {
    Router::new()
        .route("/login", get(login_page).post(login))
        .route("/logout", axum::routing::post(logout))
        .route("/assets/{name}", get(asset))
        .with_state(admin)
}

fn login_form(admin: &Admin, error: Option<&str>) -> Markup {
    Page::bare(admin.title).render(html! {
        section.card {
            h2 { "Log in" }
            @if let Some(e) = error { p.error role="alert" { (e) } }
            form #login method="post" action="/login" {
                label { "Admin token " input type="password" name="token" autocomplete="current-password" required autofocus; }
                button type="submit" { "Log in" }
            }
            p.muted { "The token was printed when this server started (or is in its config)." }
        }
    })
}

async fn login_page(State(admin): State<Arc<Admin>>) -> Markup {
    login_form(&admin, None)
}

#[derive(Deserialize)]
struct LoginForm {
    token: String,
}

async fn login(
    State(admin): State<Arc<Admin>>,
    headers: HeaderMap,
    Form(form): Form<LoginForm>,
) -> Response {
    if !same_origin(&headers) {
        return refuse(StatusCode::FORBIDDEN, "cross-site request refused");
    }
    if !admin.token_matches(&form.token) {
        let page = login_form(&admin, Some("That is not the admin token."));
        return (StatusCode::UNAUTHORIZED, page).into_response();
    }
    let id = admin.open_session();
    let cookie = format!("{}={id}; HttpOnly; SameSite=Strict; Path=/", admin.cookie);
    ([(header::SET_COOKIE, cookie)], Redirect::to("/")).into_response()
}

async fn logout(State(admin): State<Arc<Admin>>, headers: HeaderMap) -> Response {
    admin.close_session(&headers);
    let cookie = format!(
        "{}=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0",
        admin.cookie
    );
    ([(header::SET_COOKIE, cookie)], Redirect::to("/login")).into_response()
}

fn refuse(status: StatusCode, why: &str) -> Response {
    (status, why.to_owned()).into_response()
}

fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|kv| kv.trim().strip_prefix(name)?.strip_prefix('='))
}

/// True unless the browser says the request comes from another origin.
fn same_origin(headers: &HeaderMap) -> bool {
    let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) else {
        return true;
    };
    let host = headers.get(header::HOST).and_then(|v| v.to_str().ok());
    let origin_host = origin
        .strip_prefix("http://")
        .or_else(|| origin.strip_prefix("https://"));
    origin_host.is_some() && origin_host == host
}

fn form_field(body: &[u8], name: &str) -> Option<String> {
    serde_urlencoded::from_bytes::<Vec<(String, String)>>(body)
        .ok()?
        .into_iter()
        .find_map(|(k, v)| (k == name).then_some(v))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::{body::Body, http::Request as HttpRequest, routing::post};
    use tower::ServiceExt;

    fn app(admin: Arc<Admin>) -> Router {
        Router::new()
            .route("/", get(|| async { "page" }))
            .route("/act", post(|| async { "done" }))
            .layer(axum::middleware::from_fn_with_state(
                admin.clone(),
                Admin::guard,
            ))
            .merge(public_routes(admin))
    }

    async fn send(app: &Router, req: HttpRequest<Body>) -> (StatusCode, HeaderMap, String) {
        let r = app.clone().oneshot(req).await.unwrap();
        let (status, headers) = (r.status(), r.headers().clone());
        let body = axum::body::to_bytes(r.into_body(), 1 << 20).await.unwrap();
        (status, headers, String::from_utf8_lossy(&body).into_owned())
    }

    fn form(uri: &str) -> axum::http::request::Builder {
        HttpRequest::post(uri)
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .header(header::HOST, "127.0.0.1:9")
    }

    #[tokio::test]
    async fn pages_need_the_token_and_writes_need_the_sessions_csrf_and_origin() {
        let admin = Admin::new("s3cret".into(), "test");
        let app = app(admin.clone());
        let get_page = |cookie: Option<&str>| {
            let mut r = HttpRequest::get("/");
            if let Some(c) = cookie {
                r = r.header(header::COOKIE, c);
            }
            r.body(Body::empty()).unwrap()
        };
        let (status, headers, _) = send(&app, get_page(None)).await;
        assert_eq!(status, StatusCode::SEE_OTHER);
        assert_eq!(headers[header::LOCATION], "/login");
        let (status, _, _) = send(&app, form("/act").body(Body::from("csrf=x")).unwrap()).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);

        let (status, _, page) = send(
            &app,
            form("/login").body(Body::from("token=wrong")).unwrap(),
        )
        .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert!(page.contains("not the admin token"));
        let (status, headers, _) = send(
            &app,
            form("/login").body(Body::from("token=s3cret")).unwrap(),
        )
        .await;
        assert_eq!(status, StatusCode::SEE_OTHER);
        let cookie = headers[header::SET_COOKIE]
            .to_str()
            .unwrap()
            .split(';')
            .next()
            .unwrap()
            .to_owned();
        assert_eq!(send(&app, get_page(Some(&cookie))).await.2, "page");

        let csrf = admin.sessions().csrf.values().next().unwrap().clone();
        let act = |body: String, origin: &str| {
            form("/act")
                .header(header::COOKIE, &cookie)
                .header(header::ORIGIN, origin)
                .body(Body::from(body))
                .unwrap()
        };
        let ok = send(&app, act(format!("csrf={csrf}&a=1"), "http://127.0.0.1:9")).await;
        assert_eq!((ok.0, ok.2.as_str()), (StatusCode::OK, "done"));
        let stale = send(&app, act("csrf=other".into(), "http://127.0.0.1:9")).await;
        assert_eq!(stale.0, StatusCode::FORBIDDEN);
        let foreign = send(&app, act(format!("csrf={csrf}"), "http://evil.example")).await;
        assert_eq!(foreign.0, StatusCode::FORBIDDEN);

        let bearer = |token: &str| {
            HttpRequest::post("/act")
                .header(header::AUTHORIZATION, format!("Bearer {token}"))
                .body(Body::empty())
                .unwrap()
        };
        assert_eq!(send(&app, bearer("s3cret")).await.0, StatusCode::OK);
        assert_eq!(
            send(&app, bearer("s3cre")).await.0,
            StatusCode::UNAUTHORIZED
        );
    }
}
