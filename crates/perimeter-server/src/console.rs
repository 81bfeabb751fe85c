//! The staff console: one page and its script and styles, served as static assets.
//!
//! The console is a client of the JSON API and nothing more: it signs in through
//! `/api/auth/*`, reads through the same routes every other client uses, and shows what they
//! return. Whether a role sees a field is decided by the store (minimum necessary), never by
//! the page. The assets are public (they hold no data); their Content-Security-Policy
//! ([`CONSOLE_CSP`]) allows only this server's own script, styles and requests, and the QR code
//! of MFA enrolment as a `data:` image.

use axum::http::Method;
use axum::response::Response;

use crate::access::{Access, RouteError, Routes};

const PAGE_HTML: &str = include_str!("../assets/console/index.html");
const CONSOLE_JS: &str = include_str!("../assets/console/console.js");
const CONSOLE_CSS: &str = include_str!("../assets/console/console.css");

/// The Content-Security-Policy of the console's page and assets: no inline code, nothing from
/// another origin, no framing, no form posts (the script sends JSON with the CSRF header).
pub(crate) const CONSOLE_CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// The console's routes (public: static assets without data).
pub fn routes(routes: Routes) -> Result<Routes, RouteError> {
    routes
        .add(Method::GET, "/console", Access::Public, page)?
        .add(Method::GET, "/console/console.js", Access::Public, script)?
        .add(Method::GET, "/console/console.css", Access::Public, styles)
}

/// `GET /console`: the console's page.
async fn page() -> Response {
    crate::static_asset("text/html; charset=utf-8", Some(CONSOLE_CSP), PAGE_HTML)
}

/// `GET /console/console.js`: the console's script.
async fn script() -> Response {
    crate::static_asset(
        "text/javascript; charset=utf-8",
        Some(CONSOLE_CSP),
        CONSOLE_JS,
    )
}

/// `GET /console/console.css`: the console's styles.
async fn styles() -> Response {
    crate::static_asset("text/css; charset=utf-8", Some(CONSOLE_CSP), CONSOLE_CSS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_console_policy_allows_only_this_server() {
        for directive in [
            "default-src 'none'",
            "script-src 'self'",
            "connect-src 'self'",
            "frame-ancestors 'none'",
            "form-action 'none'",
        ] {
            assert!(CONSOLE_CSP.contains(directive), "{directive}");
        }
        assert!(!CONSOLE_CSP.contains("unsafe"));
    }

    #[tokio::test]
    async fn every_console_asset_carries_the_console_policy() {
        for response in [page().await, script().await, styles().await] {
            assert_eq!(
                response.headers()[axum::http::header::CONTENT_SECURITY_POLICY],
                CONSOLE_CSP
            );
        }
    }

    #[test]
    fn the_page_loads_only_its_own_assets_and_no_inline_code() {
        assert!(PAGE_HTML.contains(r#"<script src="/console/console.js"></script>"#));
        assert!(!PAGE_HTML.contains("<script>") && !PAGE_HTML.contains("style="));
        assert!(!PAGE_HTML.contains(" on"), "no inline event handlers");
        // Patient text is set as text, never parsed as HTML.
        for sink in [
            "innerHTML",
            "outerHTML",
            "insertAdjacentHTML",
            "document.write",
            "eval(",
        ] {
            assert!(!CONSOLE_JS.contains(sink), "{sink}");
        }
    }
}
