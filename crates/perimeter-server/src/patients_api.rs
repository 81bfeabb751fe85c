//! Patient and conversation reads for staff, and care teams.
//!
//! These handlers decide nothing about what a role may see: they pass the caller (a
//! [`perimeter_store::Viewer`]) to the store's minimum-necessary functions, which read the
//! caller's roles, care relation and emergency grants themselves and return views whose
//! withheld fields are absent. The JSON is the view as the store built it.
//!
//! Search values (phone, e-mail, MRN, name, member id, account number) travel in the query string of
//! `GET /api/patients?...`: the server never logs query strings (the request log and metrics
//! carry the route template only), responses are `Cache-Control: no-store` and
//! `Referrer-Policy: no-referrer`.

use axum::Json;
use axum::extract::{Path, Query};
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use perimeter_auth::Permission;
use perimeter_domain::{ConversationId, MessageId, PatientId, StaffId};
use perimeter_store::{MESSAGE_PAGE_LIMIT, PatientLookup};
use serde::{Deserialize, Serialize};

use crate::access::{Access, RouteError, Routes};
use crate::auth::admin::{bad, is_invisible};
use crate::auth::{AuthState, Principal, store_error};
use crate::error::ApiError;

/// The longest search value accepted (a full name or an e-mail address fits easily).
const MAX_SEARCH_CHARS: usize = 200;

/// The patient and conversation routes with their declared access.
pub fn routes(routes: Routes) -> Result<Routes, RouteError> {
    use Method as M;
    use Permission as P;
    routes
        .add(
            M::GET,
            "/api/patients",
            Access::Permission(P::SearchPatients),
            search,
        )?
        .add(
            M::GET,
            "/api/patients/{id}",
            Access::Permission(P::ViewDemographics),
            patient,
        )?
        .add(
            M::GET,
            "/api/patients/{id}/conversations",
            Access::Permission(P::ReadConversation),
            conversations,
        )?
        .add(
            M::GET,
            "/api/conversations/{id}/messages",
            Access::Permission(P::ReadConversation),
            messages,
        )?
        .add(
            M::GET,
            "/api/patients/{id}/care-team",
            Access::Permission(P::TriageConversation),
            care_team,
        )?
        .add(
            M::POST,
            "/api/patients/{id}/care-team",
            Access::Permission(P::TriageConversation),
            add_to_care_team,
        )?
        .add(
            M::DELETE,
            "/api/patients/{id}/care-team/{staff_id}",
            Access::Permission(P::TriageConversation),
            remove_from_care_team,
        )
}

fn patient_id(text: &str) -> Result<PatientId, ApiError> {
    text.trim().parse().map_err(|_| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_id",
            "id: expected a patient id (UUID)",
        )
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct SearchQuery {
    phone: Option<String>,
    email: Option<String>,
    mrn: Option<String>,
    name: Option<String>,
    member_id: Option<String>,
    account_number: Option<String>,
}

#[derive(Serialize)]
struct SearchResults {
    patients: Vec<perimeter_store::PatientView>,
}

/// `GET /api/patients?phone=...` (or `email=`, `mrn=`, `name=`, `member_id=`,
/// `account_number=`; exactly one): patients of the caller's practice found through the blind
/// indexes, each as the caller may see it, every result audited. By member id the store also
/// requires `view_insurance`, by account number `view_billing` (403 otherwise).
pub(crate) async fn search(
    auth: AuthState,
    principal: Principal,
    Query(q): Query<SearchQuery>,
) -> Response {
    let given = [
        q.phone.map(PatientLookup::Phone),
        q.email.map(PatientLookup::Email),
        q.mrn.map(PatientLookup::Mrn),
        q.name.map(PatientLookup::Name),
        q.member_id.map(PatientLookup::MemberId),
        q.account_number.map(PatientLookup::AccountNumber),
    ];
    let mut given = given.into_iter().flatten();
    let (Some(lookup), None) = (given.next(), given.next()) else {
        return bad(
            "invalid_search",
            "query: expected exactly one of phone, email, mrn, name, member_id or account_number",
        );
    };
    let value = match &lookup {
        PatientLookup::Phone(v)
        | PatientLookup::Email(v)
        | PatientLookup::Mrn(v)
        | PatientLookup::Name(v)
        | PatientLookup::MemberId(v)
        | PatientLookup::AccountNumber(v) => v,
    };
    if value.trim().is_empty()
        || value.chars().count() > MAX_SEARCH_CHARS
        || value.chars().any(is_invisible)
    {
        return bad(
            "invalid_search",
            "query: expected a value of 1 to 200 visible characters (no control, zero-width or direction-changing characters)",
        );
    }
    match auth
        .store()
        .search_patients(&principal.viewer(), &lookup)
        .await
    {
        Ok(patients) => Json(SearchResults { patients }).into_response(),
        Err(e) => store_error(e).into_response(),
    }
}

/// `GET /api/patients/{id}`: the patient's record as the caller may see it.
pub(crate) async fn patient(
    auth: AuthState,
    principal: Principal,
    Path(id): Path<String>,
) -> Response {
    let id = match patient_id(&id) {
        Ok(id) => id,
        Err(e) => return e.into_response(),
    };
    match auth.store().view_patient(&principal.viewer(), id).await {
        Ok(view) => Json(view).into_response(),
        Err(e) => store_error(e).into_response(),
    }
}

#[derive(Serialize)]
struct ConversationList {
    conversations: Vec<perimeter_store::ConversationView>,
}

/// `GET /api/patients/{id}/conversations`: the patient's conversations (metadata and subject).
pub(crate) async fn conversations(
    auth: AuthState,
    principal: Principal,
    Path(id): Path<String>,
) -> Response {
    let id = match patient_id(&id) {
        Ok(id) => id,
        Err(e) => return e.into_response(),
    };
    match auth
        .store()
        .view_conversations(&principal.viewer(), id)
        .await
    {
        Ok(conversations) => Json(ConversationList { conversations }).into_response(),
        Err(e) => store_error(e).into_response(),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct PageQuery {
    after: Option<String>,
    limit: Option<u32>,
}

/// `GET /api/conversations/{id}/messages?after=MESSAGE_ID&limit=N`: a page of the
/// conversation; each message's body only if the caller may see its category (`withheld`
/// otherwise).
pub(crate) async fn messages(
    auth: AuthState,
    principal: Principal,
    Path(id): Path<String>,
    Query(q): Query<PageQuery>,
) -> Response {
    let Ok(id) = id.trim().parse::<ConversationId>() else {
        return bad("invalid_id", "id: expected a conversation id (UUID)");
    };
    let after = match q.after.as_deref().map(|a| a.trim().parse::<MessageId>()) {
        None => None,
        Some(Ok(a)) => Some(a),
        Some(Err(_)) => return bad("invalid_after", "after: expected a message id (UUID)"),
    };
    let limit = q.limit.unwrap_or(100);
    if !(1..=MESSAGE_PAGE_LIMIT).contains(&limit) {
        return bad("invalid_limit", "limit: expected 1 to 500");
    }
    match auth
        .store()
        .view_messages(&principal.viewer(), id, after, limit)
        .await
    {
        Ok(page) => Json(page).into_response(),
        Err(e) => store_error(e).into_response(),
    }
}

#[derive(Serialize)]
struct CareTeam {
    members: Vec<perimeter_store::CareTeamMember>,
}

/// `GET /api/patients/{id}/care-team`.
pub(crate) async fn care_team(
    auth: AuthState,
    principal: Principal,
    Path(id): Path<String>,
) -> Response {
    let id = match patient_id(&id) {
        Ok(id) => id,
        Err(e) => return e.into_response(),
    };
    match auth.store().care_team(&principal.viewer(), id).await {
        Ok(members) => Json(CareTeam { members }).into_response(),
        Err(e) => store_error(e).into_response(),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct AddMember {
    staff_id: String,
}

#[derive(Serialize)]
struct Changed {
    changed: bool,
}

/// `POST /api/patients/{id}/care-team`: `{ staff_id }` adds a clinician or nurse of the
/// practice (not oneself: that is emergency access).
pub(crate) async fn add_to_care_team(
    auth: AuthState,
    principal: Principal,
    Path(id): Path<String>,
    Json(body): Json<AddMember>,
) -> Response {
    let id = match patient_id(&id) {
        Ok(id) => id,
        Err(e) => return e.into_response(),
    };
    let Ok(member) = body.staff_id.trim().parse::<StaffId>() else {
        return bad(
            "invalid_staff_id",
            "staff_id: expected a staff user id (UUID)",
        );
    };
    match auth
        .store()
        .add_to_care_team(&principal.viewer(), id, member)
        .await
    {
        Ok(changed) => (
            if changed {
                StatusCode::CREATED
            } else {
                StatusCode::OK
            },
            Json(Changed { changed }),
        )
            .into_response(),
        Err(e) => store_error(e).into_response(),
    }
}

/// `DELETE /api/patients/{id}/care-team/{staff_id}`.
pub(crate) async fn remove_from_care_team(
    auth: AuthState,
    principal: Principal,
    Path((id, staff)): Path<(String, String)>,
) -> Response {
    let id = match patient_id(&id) {
        Ok(id) => id,
        Err(e) => return e.into_response(),
    };
    let Ok(member) = staff.trim().parse::<StaffId>() else {
        return bad(
            "invalid_staff_id",
            "staff_id: expected a staff user id (UUID)",
        );
    };
    match auth
        .store()
        .remove_from_care_team(&principal.viewer(), id, member)
        .await
    {
        Ok(changed) => Json(Changed { changed }).into_response(),
        Err(e) => store_error(e).into_response(),
    }
}
