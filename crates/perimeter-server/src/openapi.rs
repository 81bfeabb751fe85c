//! `GET /api/openapi.json`: the OpenAPI 3 document of the server's route table.
//!
//! Generated from the ONE table [`crate::Routes`] keeps (method, path template, declared
//! access), so it cannot list a route the server lacks or miss one it has; a test compares the
//! two. Each operation names its security requirement (the session cookie or an API token's
//! bearer header; none for public endpoints), the permission it declares and the roles that
//! hold it in `perimeter_auth::authz::MATRIX`. The document holds no PHI and is public.

use std::sync::Arc;

use axum::Extension;
use axum::http::{Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};

use crate::access::{Access, RouteError, RouteSpec, Routes};

/// The document, built once when the application is assembled.
#[derive(Debug, Clone)]
pub struct OpenApiDocument(pub Arc<Value>);

/// The route serving the document.
pub fn routes(routes: Routes) -> Result<Routes, RouteError> {
    routes.add(Method::GET, "/api/openapi.json", Access::Public, serve)
}

async fn serve(doc: Option<Extension<OpenApiDocument>>) -> Response {
    match doc {
        Some(Extension(doc)) => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "application/json")],
            axum::Json(doc.0.as_ref().clone()),
        )
            .into_response(),
        None => crate::ApiError::internal().into_response(),
    }
}

fn operation_id(method: &Method, path: &str) -> String {
    let mut id = method.as_str().to_ascii_lowercase();
    for seg in path.split('/').filter(|s| !s.is_empty()) {
        id.push('_');
        let seg = seg.trim_start_matches('{').trim_end_matches('}');
        id.extend(
            seg.chars()
                .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' }),
        );
    }
    id
}

fn tag(path: &str) -> String {
    let mut segs = path.split('/').filter(|s| !s.is_empty());
    match (segs.next(), segs.next()) {
        (Some("api"), Some(second)) => second.trim_end_matches(".json").to_owned(),
        (Some(first), _) => first.to_owned(),
        _ => "root".to_owned(),
    }
}

fn operation(route: &RouteSpec) -> Value {
    let params: Vec<Value> = route
        .path
        .split('/')
        .filter_map(|s| s.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
        .map(|name| {
            json!({
                "name": name,
                "in": "path",
                "required": true,
                "schema": { "type": "string" },
                "description": "An id (UUID) or, for queues, a queue name"
            })
        })
        .collect();
    let (summary, security, extra) = match route.access {
        Access::Public => (
            "Public endpoint (no credentials; reveals nothing about patients or staff)".to_owned(),
            json!([]),
            json!({ "x-perimeter-access": "public" }),
        ),
        Access::MfaPending => (
            "Second-factor step of logging in (a session whose password was accepted)".to_owned(),
            json!([{ "session": [] }]),
            json!({ "x-perimeter-access": "mfa_pending" }),
        ),
        Access::PatientChat => (
            "Patient web chat (a chat session token in x-perimeter-chat; staff credentials do not apply)".to_owned(),
            json!([{ "chat_session": [] }]),
            json!({ "x-perimeter-access": "patient_chat" }),
        ),
        Access::Permission(p) => (
            p.summary().to_owned(),
            json!([{ "session": [] }, { "bearer": [] }]),
            json!({
                "x-perimeter-access": route.access.to_string(),
                "x-perimeter-permission": p.as_str(),
                "x-perimeter-roles": perimeter_auth::authz::roles_with(p)
                    .iter()
                    .map(|r| r.as_str())
                    .collect::<Vec<_>>(),
            }),
        ),
    };
    let error = |d: &str| json!({ "description": d, "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Error" } } } });
    let mut responses = Map::new();
    responses.insert("2XX".into(), json!({ "description": "Success" }));
    responses.insert("400".into(), error("The request is malformed"));
    if route.access != Access::Public {
        responses.insert("401".into(), error("Authentication is required"));
        responses.insert(
            "403".into(),
            error("The caller's roles do not hold the declared permission"),
        );
    }
    responses.insert(
        "404".into(),
        error("No such resource (or not in the caller's practice)"),
    );
    responses.insert(
        "422".into(),
        error("A value was refused (the message names the field)"),
    );
    responses.insert("503".into(), error("Not ready (database unavailable)"));
    let mut op = json!({
        "operationId": operation_id(&route.method, route.path),
        "summary": summary,
        "description": format!("Access: {}.", route.access),
        "tags": [tag(route.path)],
        "security": security,
        "responses": responses,
    });
    if let (Value::Object(o), Value::Object(e)) = (&mut op, extra) {
        o.extend(e);
        if !params.is_empty() {
            o.insert("parameters".into(), Value::Array(params));
        }
        if matches!(route.method, Method::POST | Method::PUT | Method::PATCH) {
            o.insert(
                "requestBody".into(),
                json!({ "required": false, "content": { "application/json": { "schema": { "type": "object" } } } }),
            );
        }
        if route.passive {
            o.insert("x-perimeter-passive".into(), Value::Bool(true));
        }
    }
    op
}

/// The OpenAPI 3.0 document of `routes`.
pub fn document(routes: &[RouteSpec]) -> Value {
    let mut paths: Map<String, Value> = Map::new();
    for r in routes {
        let entry = paths
            .entry(r.path.to_owned())
            .or_insert_with(|| Value::Object(Map::new()));
        if let Value::Object(m) = entry {
            m.insert(r.method.as_str().to_ascii_lowercase(), operation(r));
        }
    }
    json!({
        "openapi": "3.0.3",
        "info": {
            "title": "Perimeter API",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Perimeter's JSON API. Every route declares its access: public, the MFA step of logging in, or a permission of the matrix in docs/permissions.md (deny by default). Console users authenticate with the session cookie (`__Host-perimeter_session` over TLS, `perimeter_session` otherwise) and send the CSRF token in `x-csrf-token` on changes; machine clients send an API token as a bearer token. Errors are `{\"error\": {\"code\", \"message\"}}`."
        },
        "paths": paths,
        "components": {
            "securitySchemes": {
                "session": { "type": "apiKey", "in": "cookie", "name": "perimeter_session" },
                "bearer": { "type": "http", "scheme": "bearer" },
                "chat_session": { "type": "apiKey", "in": "header", "name": "x-perimeter-chat" }
            },
            "schemas": {
                "Error": {
                    "type": "object",
                    "required": ["error"],
                    "properties": {
                        "error": {
                            "type": "object",
                            "required": ["code", "message"],
                            "properties": {
                                "code": { "type": "string" },
                                "message": { "type": "string" }
                            }
                        }
                    }
                }
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_and_tags() {
        assert_eq!(
            operation_id(&Method::GET, "/api/patients/{id}"),
            "get_api_patients_id"
        );
        assert_eq!(
            operation_id(&Method::GET, "/api/openapi.json"),
            "get_api_openapi_json"
        );
        assert_eq!(tag("/api/patients/{id}"), "patients");
        assert_eq!(tag("/healthz"), "healthz");
    }
}
