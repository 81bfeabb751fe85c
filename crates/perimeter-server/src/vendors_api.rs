//! The AI vendor registry over HTTP, for administrators' scripts and the console (the CLI's
//! `perimeter vendors ...` does the same through the store): `GET /api/vendors` and
//! `GET /api/vendors/{name}` (`view_vendors`: administrators and privacy officers),
//! `POST /api/vendors`, `PUT /api/vendors/{name}` and `DELETE /api/vendors/{name}`
//! (`manage_vendors`: administrators). The store validates the terms and audits every change
//! with a revision bump; a running gateway reads the registry on every request, so changes
//! apply at once. An API key may be given to be sealed (`api_key`) or named by environment
//! variable (`api_key_env`); it is never returned, logged or put in an error.

use axum::Json;
use axum::extract::Path;
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use perimeter_auth::Permission;
use perimeter_domain::PurposeOfUse;
use perimeter_store::{
    AccessContext, BaaTerms, KeyInput, Vendor, VendorClass, VendorInput, parse_date,
};
use serde::Deserialize;
use serde_json::{Value, json};
use time::Date;
use zeroize::Zeroizing;

use crate::ApiError;
use crate::access::{Access, RouteError, Routes};
use crate::auth::{AuthState, Principal, store_error};

/// Adds the registry routes, each with its declared permission.
pub fn routes(routes: Routes) -> Result<Routes, RouteError> {
    routes
        .add(
            Method::GET,
            "/api/vendors",
            Access::Permission(Permission::ViewVendors),
            list,
        )?
        .add(
            Method::GET,
            "/api/vendors/{name}",
            Access::Permission(Permission::ViewVendors),
            show,
        )?
        .add(
            Method::POST,
            "/api/vendors",
            Access::Permission(Permission::ManageVendors),
            add,
        )?
        .add(
            Method::PUT,
            "/api/vendors/{name}",
            Access::Permission(Permission::ManageVendors),
            update,
        )?
        .add(
            Method::DELETE,
            "/api/vendors/{name}",
            Access::Permission(Permission::ManageVendors),
            remove,
        )
}

fn context(principal: &Principal) -> AccessContext {
    principal.access_context(PurposeOfUse::Operations)
}

fn date(d: Option<Date>) -> Value {
    d.map_or(Value::Null, |d| Value::String(d.to_string()))
}

/// A vendor as the API shows it (never the key; its source only).
fn view(v: &Vendor, today: Date) -> Value {
    json!({
        "name": v.name,
        "base_url": v.base_url,
        "models": v.models,
        "data_class": v.data_class.as_str(),
        "effective_class_today": v.effective_class(today).as_str(),
        "baa": v.baa.as_ref().map(|b| json!({
            "signed": b.signed.to_string(),
            "expires": b.expires.to_string(),
            "document_ref": b.document_ref,
        })),
        "zero_retention": v.zero_retention,
        "no_training": v.no_training,
        "soc2_report_date": date(v.soc2_report_date),
        "soc2_expires": date(v.soc2_expires),
        "sub_processors": v.sub_processors,
        "inside_perimeter": v.inside_perimeter,
        "enabled": v.enabled,
        "api_key": v.key.describe(),
        "revision": v.revision,
    })
}

fn unprocessable(code: &'static str, message: &'static str) -> Response {
    ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, code, message).into_response()
}

/// `GET /api/vendors`.
async fn list(auth: AuthState) -> Response {
    let today = auth.store().clock().now().date();
    match auth.store().list_vendors().await {
        Ok(vs) => Json(json!({
            "vendors": vs.iter().map(|v| view(v, today)).collect::<Vec<_>>()
        }))
        .into_response(),
        Err(e) => store_error(e).into_response(),
    }
}

/// `GET /api/vendors/{name}`.
async fn show(auth: AuthState, Path(name): Path<String>) -> Response {
    let today = auth.store().clock().now().date();
    match auth.store().vendor(&name).await {
        Ok(Some(v)) => Json(view(&v, today)).into_response(),
        Ok(None) => ApiError::not_found().into_response(),
        Err(e) => store_error(e).into_response(),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BaaBody {
    signed: String,
    expires: String,
    #[serde(default)]
    document_ref: Option<String>,
}

/// A vendor's terms as `POST /api/vendors` and `PUT /api/vendors/{name}` take them (JSON,
/// unknown fields refused); [`VendorBody::into_input`] checks the dates, class and key fields
/// and the store checks the rest (`perimeter_store::validate_vendor`).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VendorBody {
    name: String,
    base_url: String,
    models: Vec<String>,
    data_class: String,
    #[serde(default)]
    baa: Option<BaaBody>,
    #[serde(default)]
    zero_retention: bool,
    #[serde(default)]
    no_training: bool,
    #[serde(default)]
    soc2_report_date: Option<String>,
    #[serde(default)]
    soc2_expires: Option<String>,
    #[serde(default)]
    sub_processors: Vec<String>,
    #[serde(default)]
    inside_perimeter: bool,
    #[serde(default = "enabled_by_default")]
    enabled: bool,
    /// Sealed at rest; never returned.
    #[serde(default)]
    api_key: Option<Zeroizing<String>>,
    /// Read from this environment variable of the server at call time.
    #[serde(default)]
    api_key_env: Option<String>,
    /// On update: `true` removes the stored key.
    #[serde(default)]
    clear_api_key: bool,
}

fn enabled_by_default() -> bool {
    true
}

fn opt_date(s: Option<&str>, bad: &'static str) -> Result<Option<Date>, &'static str> {
    s.map(|s| parse_date(s).ok_or(bad)).transpose()
}

impl VendorBody {
    /// The store's input, or the API error code and message (which never quote the body).
    pub fn into_input(self) -> Result<VendorInput, (&'static str, &'static str)> {
        let data_class = VendorClass::parse(&self.data_class).ok_or((
            "invalid_data_class",
            "data_class: expected phi, deidentified or none",
        ))?;
        let baa = match self.baa {
            None => None,
            Some(b) => Some(BaaTerms {
                signed: parse_date(&b.signed)
                    .ok_or(("invalid_date", "baa.signed: expected YYYY-MM-DD"))?,
                expires: parse_date(&b.expires)
                    .ok_or(("invalid_date", "baa.expires: expected YYYY-MM-DD"))?,
                document_ref: b.document_ref,
            }),
        };
        let soc2_report_date = opt_date(
            self.soc2_report_date.as_deref(),
            "soc2_report_date: expected YYYY-MM-DD",
        )
        .map_err(|m| ("invalid_date", m))?;
        let soc2_expires = opt_date(
            self.soc2_expires.as_deref(),
            "soc2_expires: expected YYYY-MM-DD",
        )
        .map_err(|m| ("invalid_date", m))?;
        let key = match (self.api_key, self.api_key_env, self.clear_api_key) {
            (Some(k), None, false) => KeyInput::Secret(k),
            (None, Some(v), false) => KeyInput::Env(v),
            (None, None, true) => KeyInput::Clear,
            (None, None, false) => KeyInput::Keep,
            _ => {
                return Err((
                    "invalid_api_key",
                    "give at most one of api_key, api_key_env and clear_api_key",
                ));
            }
        };
        Ok(VendorInput {
            name: self.name,
            base_url: self.base_url,
            models: self.models,
            data_class,
            baa,
            zero_retention: self.zero_retention,
            no_training: self.no_training,
            soc2_report_date,
            soc2_expires,
            sub_processors: self.sub_processors,
            inside_perimeter: self.inside_perimeter,
            enabled: self.enabled,
            key,
        })
    }
}

/// `POST /api/vendors`.
async fn add(auth: AuthState, principal: Principal, Json(body): Json<VendorBody>) -> Response {
    let input = match body.into_input() {
        Ok(i) => i,
        Err((code, message)) => return unprocessable(code, message),
    };
    let today = auth.store().clock().now().date();
    match auth.store().add_vendor(&context(&principal), &input).await {
        Ok(v) => (StatusCode::CREATED, Json(view(&v, today))).into_response(),
        Err(e) => store_error(e).into_response(),
    }
}

/// `PUT /api/vendors/{name}`: replaces the terms (the body may rename it).
async fn update(
    auth: AuthState,
    principal: Principal,
    Path(name): Path<String>,
    Json(body): Json<VendorBody>,
) -> Response {
    let input = match body.into_input() {
        Ok(i) => i,
        Err((code, message)) => return unprocessable(code, message),
    };
    let today = auth.store().clock().now().date();
    match auth
        .store()
        .update_vendor(&context(&principal), &name, &input)
        .await
    {
        Ok(v) => Json(view(&v, today)).into_response(),
        Err(e) => store_error(e).into_response(),
    }
}

/// `DELETE /api/vendors/{name}`.
async fn remove(auth: AuthState, principal: Principal, Path(name): Path<String>) -> Response {
    match auth
        .store()
        .remove_vendor(&context(&principal), &name)
        .await
    {
        Ok(true) => StatusCode::NO_CONTENT.into_response(),
        Ok(false) => ApiError::not_found().into_response(),
        Err(e) => store_error(e).into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(extra: Value) -> VendorBody {
        let mut v = json!({
            "name": "acme",
            "base_url": "https://api.acme.example/v1",
            "models": ["acme-large"],
            "data_class": "phi",
        });
        if let (Some(m), Some(e)) = (v.as_object_mut(), extra.as_object()) {
            for (k, x) in e {
                m.insert(k.clone(), x.clone());
            }
        }
        match serde_json::from_value(v) {
            Ok(b) => b,
            Err(e) => panic!("{e}"),
        }
    }

    #[test]
    fn bodies_become_inputs_or_say_what_is_wrong() {
        let ok = body(json!({"baa": {"signed": "2025-01-01", "expires": "2027-01-01"}}));
        let input = ok.into_input().map_err(|e| e.1);
        assert!(matches!(
            input,
            Ok(VendorInput {
                key: KeyInput::Keep,
                ..
            })
        ));
        let bad = body(json!({"data_class": "secret"})).into_input();
        assert_eq!(bad.err().map(|e| e.0), Some("invalid_data_class"));
        let bad = body(json!({"baa": {"signed": "yesterday", "expires": "2027-01-01"}}));
        assert_eq!(
            bad.into_input().err().map(|e| e.1),
            Some("baa.signed: expected YYYY-MM-DD")
        );
        let both = body(json!({"api_key": "sk-1", "api_key_env": "KEY"})).into_input();
        assert_eq!(both.err().map(|e| e.0), Some("invalid_api_key"));
        let sealed = body(json!({"api_key": "sk-1"})).into_input();
        assert!(matches!(
            sealed,
            Ok(VendorInput {
                key: KeyInput::Secret(_),
                ..
            })
        ));
        assert!(
            serde_json::from_value::<VendorBody>(
                json!({"name": "x", "base_url": "y", "models": [], "data_class": "phi", "key": "z"})
            )
            .is_err(),
            "unknown fields are refused"
        );
    }
}
