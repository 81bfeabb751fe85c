//! The route table: every route is declared together with its access requirement.
//!
//! Deny by default: [`Routes`] is the only way to put a handler into Perimeter's router, and it
//! cannot be called without an [`Access`]. The table it keeps ([`RouteSpec`]) is
//! machine-readable, so tests can walk every route with every role and an OpenAPI document can
//! be generated from it.

use std::collections::BTreeMap;
use std::fmt;

use axum::Router;
use axum::handler::Handler;
use axum::http::Method;
use axum::routing::{MethodFilter, MethodRouter};
use serde::Serialize;

use crate::AppState;

/// Who may call a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Access {
    /// Anyone, without credentials: only for endpoints that reveal nothing about patients or
    /// staff (health, readiness, metrics) and the log-in endpoint itself.
    Public,
    /// A session whose password was accepted but whose second factor is still due (MFA
    /// verification, enrolment, recovery codes). Grants nothing else.
    MfaPending,
    /// A patient in a live web chat session (the `x-perimeter-chat` token of
    /// `POST /api/chat/sessions`, checked by `crate::channels::web_chat`): verified or not, the
    /// handler decides what the session may see. Staff sessions and API tokens grant nothing
    /// here.
    PatientChat,
    /// A signed-in user (or an API token) holding this permission in the matrix of
    /// `perimeter_auth::authz` (checked by `crate::auth::guard`).
    Permission(perimeter_auth::Permission),
}

impl fmt::Display for Access {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Access::Public => f.write_str("public"),
            Access::MfaPending => f.write_str("mfa_pending"),
            Access::PatientChat => f.write_str("patient_chat"),
            Access::Permission(p) => write!(f, "permission:{p}"),
        }
    }
}

/// One declared route: method, path template (axum syntax, e.g. `/patients/{id}`) and access.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RouteSpec {
    /// The HTTP method, upper case.
    #[serde(serialize_with = "serialize_method")]
    pub method: Method,
    /// The path template; placeholders are `{name}`, never concrete ids.
    pub path: &'static str,
    /// Who may call it.
    pub access: Access,
    /// A background poll (the console's): it checks the session but is not user activity, so
    /// it does not extend the idle timeout.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub passive: bool,
}

fn serialize_method<S: serde::Serializer>(method: &Method, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(method.as_str())
}

/// A route that cannot be registered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RouteError {
    /// The same method and path were declared twice.
    #[error("route {method} {path} is declared twice")]
    Duplicate {
        /// The method.
        method: Method,
        /// The path template.
        path: &'static str,
    },
    /// The path template is not of the form `/segment/{param}/...`.
    #[error(
        "route path {path:?} is invalid: expected a path starting with '/' whose parameters are written {{name}}"
    )]
    InvalidPath {
        /// The path template.
        path: &'static str,
    },
    /// Only `GET` routes may be passive (a change is always user activity).
    #[error("route {method} {path} cannot be passive: only GET routes are background polls")]
    PassiveWrite {
        /// The method.
        method: Method,
        /// The path template.
        path: &'static str,
    },
    /// The method cannot be routed.
    #[error("route method {method} is not supported")]
    UnsupportedMethod {
        /// The method.
        method: Method,
    },
}

/// Builder for Perimeter's router. Every route goes through [`Routes::add`], which requires an
/// [`Access`]; there is no other way to add a handler.
pub struct Routes {
    by_path: BTreeMap<&'static str, MethodRouter<AppState>>,
    table: Vec<RouteSpec>,
}

impl fmt::Debug for Routes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Routes")
            .field("table", &self.table)
            .finish()
    }
}

impl Default for Routes {
    fn default() -> Self {
        Self::new()
    }
}

impl Routes {
    /// An empty table.
    pub fn new() -> Self {
        Self {
            by_path: BTreeMap::new(),
            table: Vec::new(),
        }
    }

    /// Declares `method path` with its access requirement and handler. A signed-in user's
    /// request to it counts as activity (it restarts the session's idle timer).
    pub fn add<H, T>(
        self,
        method: Method,
        path: &'static str,
        access: Access,
        handler: H,
    ) -> Result<Self, RouteError>
    where
        H: Handler<T, AppState>,
        T: 'static,
    {
        self.insert(method, path, access, false, handler)
    }

    /// Declares a route the console polls in the background (`GET` only): its requests are
    /// authorized like any other but are not user activity, so they never extend the idle
    /// timeout and an unattended console still logs off.
    pub fn add_passive<H, T>(
        self,
        method: Method,
        path: &'static str,
        access: Access,
        handler: H,
    ) -> Result<Self, RouteError>
    where
        H: Handler<T, AppState>,
        T: 'static,
    {
        if method != Method::GET {
            return Err(RouteError::PassiveWrite { method, path });
        }
        self.insert(method, path, access, true, handler)
    }

    fn insert<H, T>(
        mut self,
        method: Method,
        path: &'static str,
        access: Access,
        passive: bool,
        handler: H,
    ) -> Result<Self, RouteError>
    where
        H: Handler<T, AppState>,
        T: 'static,
    {
        validate_path(path)?;
        if self
            .table
            .iter()
            .any(|r| r.method == method && r.path == path)
        {
            return Err(RouteError::Duplicate { method, path });
        }
        let filter =
            MethodFilter::try_from(method.clone()).map_err(|_| RouteError::UnsupportedMethod {
                method: method.clone(),
            })?;
        let existing = self.by_path.remove(path).unwrap_or_default();
        let guarded = crate::auth::guard(access, passive, MethodRouter::new().on(filter, handler));
        self.by_path.insert(path, existing.merge(guarded));
        self.table.push(RouteSpec {
            method,
            path,
            access,
            passive,
        });
        Ok(self)
    }

    /// The declared routes, in declaration order.
    pub fn table(&self) -> &[RouteSpec] {
        &self.table
    }

    /// The axum router and the route table.
    pub(crate) fn into_parts(self) -> (Router<AppState>, Vec<RouteSpec>) {
        let mut router = Router::new();
        for (path, method_router) in self.by_path {
            router = router.route(path, method_router);
        }
        (router, self.table)
    }
}

/// Accepts `/`, `/a/b`, `/a/{id}`; rejects empty segments, `:id`/`*rest` (old axum syntax,
/// which axum would refuse at run time) and unbalanced braces.
fn validate_path(path: &'static str) -> Result<(), RouteError> {
    let bad = || RouteError::InvalidPath { path };
    let rest = path.strip_prefix('/').ok_or_else(bad)?;
    if rest.is_empty() {
        return Ok(());
    }
    for segment in rest.split('/') {
        if segment.is_empty() || segment.starts_with(':') || segment.starts_with('*') {
            return Err(bad());
        }
        if segment.contains('{') || segment.contains('}') {
            let inner = segment
                .strip_prefix('{')
                .and_then(|s| s.strip_suffix('}'))
                .ok_or_else(bad)?;
            let valid =
                !inner.is_empty() && inner.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
            if !valid {
                return Err(bad());
            }
        } else if !segment
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        {
            return Err(bad());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn ok() -> &'static str {
        "ok"
    }

    #[test]
    fn paths_are_validated() {
        for good in ["/", "/healthz", "/patients/{id}", "/a-b/c_d/{x_1}/v1.json"] {
            assert!(validate_path(good).is_ok(), "{good}");
        }
        for bad in [
            "", "healthz", "//", "/a/", "/:id", "/*rest", "/{}", "/{a", "/a}", "/x y",
        ] {
            assert!(validate_path(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn duplicates_are_refused_and_methods_share_a_path() {
        let routes = Routes::new()
            .add(Method::GET, "/x", Access::Public, ok)
            .unwrap()
            .add(Method::POST, "/x", Access::Public, ok)
            .unwrap();
        assert_eq!(routes.table().len(), 2);
        let err = routes
            .add(Method::GET, "/x", Access::Public, ok)
            .unwrap_err();
        assert!(matches!(err, RouteError::Duplicate { .. }));
    }

    #[test]
    fn only_gets_may_be_passive() {
        let routes = Routes::new()
            .add_passive(Method::GET, "/poll", Access::Public, ok)
            .unwrap();
        assert!(routes.table()[0].passive);
        let err = routes
            .add_passive(Method::POST, "/poll", Access::Public, ok)
            .unwrap_err();
        assert!(matches!(err, RouteError::PassiveWrite { .. }));
    }

    #[test]
    fn table_serializes_for_tooling() {
        let routes = Routes::new()
            .add(Method::GET, "/healthz", Access::Public, ok)
            .unwrap();
        let json = serde_json::to_value(routes.table()).unwrap();
        assert_eq!(
            json,
            serde_json::json!([{ "method": "GET", "path": "/healthz", "access": "public" }])
        );
    }
}
