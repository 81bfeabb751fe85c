//! Insurance coverages and billing accounts for billing staff and the front desk.
//!
//! | Route | Declares |
//! |---|---|
//! | `GET /api/patients/{id}/coverages` | `view_insurance` |
//! | `POST /api/patients/{id}/coverages` | `manage_insurance` |
//! | `PUT /api/patients/{id}/coverages/{coverage_id}` | `manage_insurance` |
//! | `POST /api/patients/{id}/coverages/{coverage_id}/end` | `manage_insurance` |
//! | `GET /api/patients/{id}/account` | `view_billing` |
//! | `PUT /api/patients/{id}/account` | `manage_billing` |
//!
//! Lookups by member id and account number are `GET /api/patients?member_id=...` and
//! `?account_number=...` (`patients_api.rs`). Like the other patient routes, these handlers
//! decide nothing about what a role may see: they turn the JSON into the store's validated
//! types (a value that does not fit is a 422 naming the field, never echoing the value, and
//! nothing is stored) and call one store function with the caller as a
//! [`perimeter_store::Viewer`]; the store checks the same permission, keeps to the caller's
//! practice and audits in the same transaction.

use axum::Json;
use axum::extract::Path;
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use perimeter_auth::Permission;
use perimeter_domain::PatientId;
use perimeter_store::{
    AccountIdentifier, AccountInput, Cents, CoverageInput, InsuranceName, StoreError,
    SubscriberRelationship, parse_date,
};
use serde::{Deserialize, Serialize};
use time::Date;
use uuid::Uuid;

use crate::access::{Access, RouteError, Routes};
use crate::auth::{AuthState, Principal, store_error};
use crate::error::ApiError;

/// The coverage and billing-account routes with their declared access.
pub fn routes(routes: Routes) -> Result<Routes, RouteError> {
    use Method as M;
    use Permission as P;
    let p = Access::Permission;
    routes
        .add(
            M::GET,
            "/api/patients/{id}/coverages",
            p(P::ViewInsurance),
            coverages,
        )?
        .add(
            M::POST,
            "/api/patients/{id}/coverages",
            p(P::ManageInsurance),
            add_coverage,
        )?
        .add(
            M::PUT,
            "/api/patients/{id}/coverages/{coverage_id}",
            p(P::ManageInsurance),
            update_coverage,
        )?
        .add(
            M::POST,
            "/api/patients/{id}/coverages/{coverage_id}/end",
            p(P::ManageInsurance),
            end_coverage,
        )?
        .add(
            M::GET,
            "/api/patients/{id}/account",
            p(P::ViewBilling),
            account,
        )?
        .add(
            M::PUT,
            "/api/patients/{id}/account",
            p(P::ManageBilling),
            set_account,
        )
}

fn bad_request(code: &'static str, message: &'static str) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, code, message)
}

fn patient_id(text: &str) -> Result<PatientId, ApiError> {
    text.trim()
        .parse()
        .map_err(|_| bad_request("invalid_id", "id: expected a patient id (UUID)"))
}

fn coverage_id(text: &str) -> Result<Uuid, ApiError> {
    text.trim()
        .parse()
        .map_err(|_| bad_request("invalid_id", "coverage_id: expected a coverage id (UUID)"))
}

/// A validation failure of the store's types, as the 422 every store refusal gets.
fn invalid(e: StoreError) -> ApiError {
    store_error(e)
}

fn date(field: &'static str, raw: Option<&str>) -> Result<Option<Date>, ApiError> {
    raw.map(|r| {
        parse_date(r).ok_or_else(|| {
            invalid(StoreError::Invalid {
                field,
                expected: "a date YYYY-MM-DD",
            })
        })
    })
    .transpose()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct CoverageBody {
    payer: String,
    plan: Option<String>,
    member_id: String,
    group_number: Option<String>,
    relationship: Option<String>,
    effective_from: Option<String>,
    effective_to: Option<String>,
    primary: Option<bool>,
}

impl CoverageBody {
    fn input(&self) -> Result<CoverageInput, ApiError> {
        Ok(CoverageInput {
            payer: InsuranceName::parse("payer", &self.payer).map_err(invalid)?,
            plan: self
                .plan
                .as_deref()
                .map(|p| InsuranceName::parse("plan", p))
                .transpose()
                .map_err(invalid)?,
            member_id: AccountIdentifier::parse("member_id", &self.member_id).map_err(invalid)?,
            group_number: self
                .group_number
                .as_deref()
                .map(|g| AccountIdentifier::parse("group_number", g))
                .transpose()
                .map_err(invalid)?,
            relationship: match self.relationship.as_deref() {
                None => SubscriberRelationship::Subscriber,
                Some(r) => r.parse().map_err(invalid)?,
            },
            effective_from: date("effective_from", self.effective_from.as_deref())?,
            effective_to: date("effective_to", self.effective_to.as_deref())?,
            primary: self.primary.unwrap_or(false),
        })
    }
}

#[derive(Serialize)]
struct CoverageList {
    coverages: Vec<perimeter_store::CoverageView>,
}

/// `GET /api/patients/{id}/coverages`: every coverage, oldest first, ended ones included.
pub(crate) async fn coverages(
    auth: AuthState,
    principal: Principal,
    Path(id): Path<String>,
) -> Response {
    let id = try_resp!(patient_id(&id));
    let coverages = store!(auth.store().view_coverages(&principal.viewer(), id));
    Json(CoverageList { coverages }).into_response()
}

/// `POST /api/patients/{id}/coverages` `{payer, plan?, member_id, group_number?,
/// relationship? (self, spouse, child, other; default self), effective_from?, effective_to?
/// (YYYY-MM-DD), primary? (default false)}`: 201 with the coverage.
pub(crate) async fn add_coverage(
    auth: AuthState,
    principal: Principal,
    Path(id): Path<String>,
    Json(body): Json<CoverageBody>,
) -> Response {
    let id = try_resp!(patient_id(&id));
    let input = try_resp!(body.input());
    let view = store!(auth.store().add_coverage(&principal.viewer(), id, &input));
    (StatusCode::CREATED, Json(view)).into_response()
}

/// `PUT /api/patients/{id}/coverages/{coverage_id}`: replaces the coverage's fields (same
/// body as `POST`).
pub(crate) async fn update_coverage(
    auth: AuthState,
    principal: Principal,
    Path((id, coverage)): Path<(String, String)>,
    Json(body): Json<CoverageBody>,
) -> Response {
    let id = try_resp!(patient_id(&id));
    let coverage = try_resp!(coverage_id(&coverage));
    let input = try_resp!(body.input());
    let view = store!(
        auth.store()
            .update_coverage(&principal.viewer(), id, coverage, &input)
    );
    Json(view).into_response()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct EndBody {
    effective_to: String,
}

/// `POST /api/patients/{id}/coverages/{coverage_id}/end` `{effective_to (YYYY-MM-DD)}`: the
/// coverage ends on that day and is no longer primary; it stays on record.
pub(crate) async fn end_coverage(
    auth: AuthState,
    principal: Principal,
    Path((id, coverage)): Path<(String, String)>,
    Json(body): Json<EndBody>,
) -> Response {
    let id = try_resp!(patient_id(&id));
    let coverage = try_resp!(coverage_id(&coverage));
    let Some(to) = try_resp!(date("effective_to", Some(&body.effective_to))) else {
        return bad_request(
            "invalid_effective_to",
            "effective_to: expected a date YYYY-MM-DD",
        )
        .into_response();
    };
    let view = store!(
        auth.store()
            .end_coverage(&principal.viewer(), id, coverage, to)
    );
    Json(view).into_response()
}

#[derive(Serialize)]
struct AccountResponse {
    account: Option<perimeter_store::BillingAccountView>,
}

/// `GET /api/patients/{id}/account`: the billing account, or `{"account": null}`.
pub(crate) async fn account(
    auth: AuthState,
    principal: Principal,
    Path(id): Path<String>,
) -> Response {
    let id = try_resp!(patient_id(&id));
    let account = store!(auth.store().view_billing_account(&principal.viewer(), id));
    Json(AccountResponse { account }).into_response()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct AccountBody {
    account_number: String,
    balance_cents: i64,
    last_statement: Option<String>,
}

/// `PUT /api/patients/{id}/account` `{account_number, balance_cents, last_statement?
/// (YYYY-MM-DD)}`: creates or replaces the billing account.
pub(crate) async fn set_account(
    auth: AuthState,
    principal: Principal,
    Path(id): Path<String>,
    Json(body): Json<AccountBody>,
) -> Response {
    let id = try_resp!(patient_id(&id));
    let input = AccountInput {
        account_number: try_resp!(
            AccountIdentifier::parse("account_number", &body.account_number).map_err(invalid)
        ),
        balance: try_resp!(Cents::new("balance_cents", body.balance_cents).map_err(invalid)),
        last_statement: try_resp!(date("last_statement", body.last_statement.as_deref())),
    };
    let view = store!(
        auth.store()
            .set_billing_account(&principal.viewer(), id, &input)
    );
    Json(view).into_response()
}
