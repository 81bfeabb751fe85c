//! The session cookie: `__Host-perimeter_session` under TLS (Secure, Path=/, no Domain, as the
//! `__Host-` prefix requires), `perimeter_session` without TLS; always HttpOnly and
//! SameSite=Strict, and without Max-Age (it ends with the browser; the server's timeouts end
//! it sooner).

use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::Response;
use perimeter_auth::{MalformedToken, SessionToken};

use super::AuthState;

/// The cookie's name without TLS.
pub const SESSION_COOKIE: &str = "perimeter_session";
/// The cookie's name under TLS.
pub const SESSION_COOKIE_TLS: &str = "__Host-perimeter_session";

/// The session token in the request's cookies: `None` if there is no such cookie,
/// `Some(Err)` if it is malformed (or present twice).
pub(crate) fn session_token(
    headers: &HeaderMap,
    name: &str,
) -> Option<Result<SessionToken, MalformedToken>> {
    let mut found: Option<&str> = None;
    for value in headers.get_all(header::COOKIE) {
        let Ok(text) = value.to_str() else {
            continue;
        };
        for pair in text.split(';') {
            let Some((k, v)) = pair.trim().split_once('=') else {
                continue;
            };
            if k.trim() == name {
                if found.is_some() {
                    return Some(Err(MalformedToken));
                }
                found = Some(v.trim());
            }
        }
    }
    found.map(SessionToken::parse)
}

fn attributes(auth: &AuthState) -> &'static str {
    if auth.settings().tls {
        "Path=/; HttpOnly; SameSite=Strict; Secure"
    } else {
        "Path=/; HttpOnly; SameSite=Strict"
    }
}

/// Sets the session cookie on a response.
pub(crate) fn set(auth: &AuthState, response: &mut Response, token: &SessionToken) {
    let value = format!(
        "{}={}; {}",
        auth.cookie_name(),
        token.as_str(),
        attributes(auth)
    );
    if let Ok(v) = HeaderValue::from_str(&value) {
        response.headers_mut().append(header::SET_COOKIE, v);
    }
}

/// Clears the session cookie.
pub(crate) fn clear(auth: &AuthState, response: &mut Response) {
    let value = format!("{}=; Max-Age=0; {}", auth.cookie_name(), attributes(auth));
    if let Ok(v) = HeaderValue::from_str(&value) {
        response.headers_mut().append(header::SET_COOKIE, v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(values: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(header::COOKIE, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn finds_the_named_cookie_among_others() {
        let token = SessionToken::generate().unwrap();
        let h = headers(&[&format!("a=b; perimeter_session={}; c=d", token.as_str())]);
        assert_eq!(session_token(&h, SESSION_COOKIE).unwrap().unwrap(), token);
        assert!(session_token(&h, SESSION_COOKIE_TLS).is_none());
        assert!(session_token(&headers(&["x=y"]), SESSION_COOKIE).is_none());
    }

    #[test]
    fn malformed_or_duplicated_cookies_are_refused() {
        let token = SessionToken::generate().unwrap();
        for bad in [
            "perimeter_session=".to_owned(),
            "perimeter_session=%00%01".to_owned(),
            format!("perimeter_session={}x", token.as_str()),
            format!(
                "perimeter_session={}; perimeter_session={}",
                token.as_str(),
                token.as_str()
            ),
        ] {
            assert!(matches!(
                session_token(&headers(&[&bad]), SESSION_COOKIE),
                Some(Err(_))
            ));
        }
    }

    proptest::proptest! {
        #[test]
        fn cookie_parsing_never_panics(s in "[ -~]{0,120}") {
            if let Ok(v) = HeaderValue::from_str(&s) {
                let mut h = HeaderMap::new();
                h.insert(header::COOKIE, v);
                let _ = session_token(&h, SESSION_COOKIE);
            }
        }
    }
}
