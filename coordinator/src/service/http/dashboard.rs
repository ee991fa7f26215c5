//! The dashboard: one embedded page (`assets/index.html` and `app.js`) that draws what the
//! data API answers, the login form, and the static assets, uPlot among them (vendored from
//! npm, pinned in `assets/vendor/SHA256SUMS`). Nothing is fetched at run time.
//!
//! Login: the form posts the user token; a right one is kept in an `HttpOnly`,
//! `SameSite=Strict` cookie, because a browser's `EventSource` cannot send an
//! `Authorization` header. The cookie holds the token hex-encoded (a token may hold bytes
//! a cookie may not) and is checked exactly as the header is.

use axum::extract::{Form, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};

use crate::security::Gate;

const COOKIE: &str = "ibsweep_token";

const INDEX: &str = include_str!("../../../assets/index.html");
const LOGIN: &str = include_str!("../../../assets/login.html");

/// (name, content type, bytes) of every asset.
const ASSETS: [(&str, &str, &[u8]); 4] = [
    ("app.js", "text/javascript; charset=utf-8", include_bytes!("../../../assets/app.js")),
    ("app.css", "text/css; charset=utf-8", include_bytes!("../../../assets/app.css")),
    ("uPlot.iife.min.js", "text/javascript; charset=utf-8", include_bytes!("../../../assets/vendor/uPlot.iife.min.js")),
    ("uPlot.min.css", "text/css; charset=utf-8", include_bytes!("../../../assets/vendor/uPlot.min.css")),
];

/// Every page is the one app; it reads its path and asks the API.
pub(super) async fn page() -> Response {
    ([(header::CONTENT_TYPE, "text/html; charset=utf-8"), (header::CACHE_CONTROL, "no-store")], INDEX).into_response()
}

pub(super) async fn asset(axum::extract::Path(file): axum::extract::Path<String>) -> Response {
    match ASSETS.iter().find(|(name, _, _)| *name == file) {
        Some((_, kind, bytes)) => ([(header::CONTENT_TYPE, *kind), (header::CACHE_CONTROL, "no-cache")], *bytes).into_response(),
        None => (StatusCode::NOT_FOUND, format!("no asset {file}\n")).into_response(),
    }
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// A same-site path to go back to after logging in, never another site's address.
fn safe_next(next: &str) -> &str {
    if next.starts_with('/') && !next.starts_with("//") && !next.contains('\\') { next } else { "/" }
}

fn login_html(message: &str, next: &str) -> String {
    LOGIN.replace("{{message}}", &escape(message)).replace("{{next}}", &escape(safe_next(next)))
}

/// The login form in place of a page the request may not see.
pub(super) fn login_page(code: tonic::Code, why: &str, uri: &Uri) -> Response {
    let status = if code == tonic::Code::PermissionDenied { StatusCode::FORBIDDEN } else { StatusCode::UNAUTHORIZED };
    // Arriving without any credentials is not an error worth a message.
    let message = if why.contains("needs a bearer token") { "" } else { why };
    let next = uri.path_and_query().map_or("/", |p| p.as_str());
    (status, [(header::CONTENT_TYPE, "text/html; charset=utf-8")], login_html(message, next)).into_response()
}

#[derive(Debug, serde::Deserialize)]
pub(super) struct NextQuery {
    #[serde(default)]
    next: String,
}

pub(super) async fn login_form(axum::extract::Query(q): axum::extract::Query<NextQuery>) -> Response {
    ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], login_html("", &q.next)).into_response()
}

#[derive(Debug, serde::Deserialize)]
pub(super) struct Login {
    token: String,
    #[serde(default)]
    next: String,
}

pub(super) async fn login(State(gate): State<Gate>, Form(form): Form<Login>) -> Response {
    let token = form.token.trim();
    match gate.check_bearer(Some(&format!("Bearer {token}")), "the login form") {
        Ok(()) => {
            let cookie = format!("{COOKIE}={}; HttpOnly; SameSite=Strict; Path=/", hex(token.as_bytes()));
            let mut response = (StatusCode::SEE_OTHER, [(header::LOCATION, safe_next(&form.next))]).into_response();
            if let Ok(value) = HeaderValue::from_str(&cookie) {
                response.headers_mut().insert(header::SET_COOKIE, value);
            }
            response
        }
        Err(status) => {
            let status_code = if status.code() == tonic::Code::PermissionDenied {
                StatusCode::FORBIDDEN
            } else {
                StatusCode::UNAUTHORIZED
            };
            (status_code, [(header::CONTENT_TYPE, "text/html; charset=utf-8")], login_html(status.message(), &form.next))
                .into_response()
        }
    }
}

pub(super) async fn logout() -> Response {
    let cookie = format!("{COOKIE}=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0");
    (StatusCode::SEE_OTHER, [(header::LOCATION, "/login".to_string()), (header::SET_COOKIE, cookie)]).into_response()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Option<String> {
    if text.len() % 2 != 0 {
        return None;
    }
    let bytes: Option<Vec<u8>> =
        (0..text.len()).step_by(2).map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok()).collect();
    String::from_utf8(bytes?).ok()
}

/// The token in the login cookie, if the request has one.
pub(super) fn cookie_token(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .and_then(|(_, value)| unhex(value))
}

#[cfg(test)]
mod tests {
    use super::*;
    use sha2::{Digest, Sha256};

    /// The embedded vendor files are the ones `assets/vendor/SHA256SUMS` pins (and
    /// `deploy/vendor-assets.sh` reproduces from npm).
    #[test]
    fn vendored_assets_match_their_pinned_checksums() {
        let sums = include_str!("../../../assets/vendor/SHA256SUMS");
        let mut checked = 0;
        for line in sums.lines() {
            let (sum, name) = line.split_once("  ").unwrap();
            let (_, _, bytes) = ASSETS.iter().find(|(n, _, _)| *n == name).unwrap();
            assert_eq!(hex(&Sha256::digest(bytes)), sum, "{name} differs from its pinned checksum");
            checked += 1;
        }
        assert_eq!(checked, 2);
    }

    #[test]
    fn the_cookie_carries_any_token_and_nothing_else() {
        let mut headers = HeaderMap::new();
        let token = "s3cr=t; with odd bytes ü";
        headers.insert(header::COOKIE, HeaderValue::from_str(&format!("a=b; {COOKIE}={}", hex(token.as_bytes()))).unwrap());
        assert_eq!(cookie_token(&headers).as_deref(), Some(token));
        headers.insert(header::COOKIE, HeaderValue::from_static("ibsweep_token=zz"));
        assert_eq!(cookie_token(&headers), None);
    }

    #[test]
    fn after_login_only_same_site_paths() {
        assert_eq!(safe_next("/sweeps/x?job=1"), "/sweeps/x?job=1");
        for bad in ["//evil.example/", "https://evil.example/", "/\\evil", ""] {
            assert_eq!(safe_next(bad), "/", "{bad}");
        }
        assert!(login_html("<b>", "/\"><script>").contains("&lt;b&gt;"));
        assert!(!login_html("", "/\"><script>").contains("<script>"));
    }
}
