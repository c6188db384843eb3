//! The HTTP API's bodies as types, and its OpenAPI description (`GET /openapi.json`), derived
//! from the handlers' `#[utoipa::path]` attributes and these types, so the description cannot
//! drift from what the handlers send. `tests/tests/trainer_openapi.rs` runs schemathesis
//! against a live server with it.

use axum::response::{IntoResponse, Response};
use prewarm_shared::signals::{KEY_ID_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER};
use serde::Serialize;
use utoipa::OpenApi;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};

use crate::ingest::{IngestReport, Rejection};
use crate::monitor::{Alert, SkillRow};
use crate::plan::PlanStep;
use crate::profile::quality::{ProfileQuality, RegionQuality};
use crate::service::{PoolSteps, RegionPlan};
use crate::store::EdgeSummary;

/// Every error: what went wrong, in words meant for the operator.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    /// What went wrong.
    pub error: String,
}

/// `GET /healthz`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Health {
    /// Always true when the trainer answers.
    pub ok: bool,
    /// Events stored (a kept total, no scan).
    pub events: u64,
}

/// `GET /v1/status`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Status {
    /// Events stored (a kept total).
    pub events: u64,
    /// What the edge has signalled.
    pub edge: EdgeSummary,
    /// Alerts firing now.
    pub alerts: Vec<Alert>,
    /// The published forecasts' skill per region × profile.
    pub forecast_skill: Vec<SkillRow>,
    /// Per region, the published version's profile quality.
    pub profile_quality: std::collections::BTreeMap<String, RegionQuality>,
}

/// `GET /v1/plan`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Plan {
    /// Each region's plan.
    pub regions: Vec<RegionPlan>,
    /// Prewarm signals from the edge still raising the plan.
    pub prewarm_signals_in_effect: usize,
}

/// `POST /v1/signals`: what the accepted batch held.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct SignalCounts {
    /// Demand counts in the batch.
    pub demand: usize,
    /// Prewarm requests in the batch.
    pub prewarm: usize,
    /// Sampled states in the batch.
    pub states: usize,
}

/// `POST /v1/rollback`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct RolledBack {
    /// The version now current.
    pub current_version: Option<u32>,
    /// Always true: periodic publishing waits for `POST /v1/resume`.
    pub publishing_paused: bool,
}

/// `POST /v1/resume`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Resumed {
    /// Whether publishing was paused.
    pub resumed: bool,
}

/// The dashboard's rollback form (`application/x-www-form-urlencoded`); API clients may send
/// the token as a bearer and the version in the query instead. Only for the description.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[allow(dead_code)]
pub struct RollbackForm {
    /// The kept version to go back to (default: the one before).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = u32, minimum = 1, maximum = 4294967295_u64)]
    pub version: Option<u32>,
    /// The admin token (or send it as a bearer).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = String)]
    pub token: Option<String>,
}

/// The dashboard's resume form. Only for the description.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[allow(dead_code)]
pub struct ResumeForm {
    /// The admin token (or send it as a bearer).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = String)]
    pub token: Option<String>,
}

/// One line of `POST /v1/events` ([`crate::ingest::event::EventLine`]), described by hand: its
/// rules (a time as a number or a string, a device or a User-Agent) need `anyOf`, which the
/// derive cannot say. Exact both ways, which schemathesis checks: what it allows is accepted
/// (`positive_data_acceptance`), what it forbids is refused (`negative_data_rejection`), but
/// for RFC 3339 years: the pattern takes 2001–2098 so every offset stays in range.
#[derive(Debug)]
pub struct EventLineSchema;

impl EventLineSchema {
    fn json() -> serde_json::Value {
        use crate::ingest::event::{MAX_PATH_LEN, MAX_REGION_LEN, MAX_USER_AGENT_LEN, TIME_RANGE};
        use serde_json::json;
        let either_case = |word: &str| -> String {
            word.chars().map(|c| format!("[{}{}]", c.to_ascii_uppercase(), c.to_ascii_lowercase())).collect()
        };
        let devices: Vec<String> =
            prewarm_shared::classify::Device::ALL.iter().map(|d| either_case(d.name())).collect();
        let device = json!({ "type": "string", "pattern": format!("^({})$", devices.join("|")),
            "description": "desktop, mobile, tablet or bot (any case); instead of a User-Agent" });
        let user_agent = json!({ "type": "string", "maxLength": MAX_USER_AGENT_LEN });
        let non_negative = json!({ "type": ["number", "null"], "minimum": 0 });
        let properties = |device: serde_json::Value, user_agent: serde_json::Value| {
            json!({
                "time": { "anyOf": [
                    { "type": "number", "minimum": TIME_RANGE.start(), "maximum": TIME_RANGE.end(),
                      "description": "Unix seconds" },
                    { "type": "string", "description": "RFC 3339",
                      "pattern": "^(200[1-9]|20[1-8][0-9]|209[0-8])-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])[Tt ]([01][0-9]|2[0-3]):[0-5][0-9]:([0-5][0-9]|60)(\\.[0-9]*)?([Zz]|[+-][0-9]{2}:[0-9]{2})$" }
                ]},
                "user": { "type": "string", "pattern": "^[0-9a-fA-F]{64}$",
                          "description": "HMAC-SHA256(salt, user id) in hex: never a raw identifier" },
                "region": { "type": "string", "pattern": format!("^[A-Za-z0-9_-]{{1,{MAX_REGION_LEN}}}$") },
                "path": { "type": "string", "pattern": "^/", "maxLength": MAX_PATH_LEN },
                "content_type": { "type": ["string", "null"] },
                "accept": { "type": ["string", "null"] },
                "user_agent": user_agent,
                "device": device,
                "status": { "type": "integer", "minimum": 100, "maximum": 599 },
                "bytes": { "type": "integer", "minimum": 0, "maximum": u64::MAX },
                "duration_ms": { "type": "number", "minimum": 0 },
                "rtt_ms": non_negative,
                "utc_offset_minutes": { "type": ["integer", "null"], "minimum": -840, "maximum": 840 },
                "cpu_ms": non_negative,
                "memory_mb_s": non_negative,
                "value": non_negative,
            })
        };
        let nullable = |mut schema: serde_json::Value| {
            schema["type"] = json!(["string", "null"]);
            schema
        };
        let required = ["time", "user", "region", "path", "status", "bytes", "duration_ms"];
        let variant = |named: &str, device: serde_json::Value, user_agent: serde_json::Value| {
            let mut required: Vec<&str> = required.to_vec();
            required.push(named);
            json!({ "type": "object", "additionalProperties": false, "required": required,
                    "properties": properties(device, user_agent) })
        };
        json!({
            "description": "One behaviour event (a line of NDJSON): a device class or a User-Agent is required",
            "anyOf": [
                variant("device", device.clone(), nullable(user_agent.clone())),
                variant("user_agent", nullable(device), user_agent),
            ]
        })
    }
}

impl utoipa::PartialSchema for EventLineSchema {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        // The JSON above is a valid schema by construction; a test reads it back.
        match serde_json::from_value(Self::json()) {
            Ok(schema) => utoipa::openapi::RefOr::T(schema),
            Err(e) => {
                tracing::error!(error = %e, "the event line schema does not parse");
                utoipa::openapi::RefOr::T(utoipa::openapi::schema::Schema::default())
            }
        }
    }
}

impl utoipa::ToSchema for EventLineSchema {
    fn name() -> std::borrow::Cow<'static, str> {
        "EventLine".into()
    }
}

/// A `POST /v1/events` refused whole: every line rejected (the report), or the body itself
/// unreadable (an error). Only for the description.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(untagged)]
#[allow(dead_code)]
pub enum EventsRefused {
    /// Some lines were refused (the report says which).
    Report(IngestReport),
    /// The body could not be read.
    Error(ErrorBody),
}

/// An error response: the status's meaning for this API, with [`ErrorBody`].
fn refusal(status: &str, description: &str) -> (String, utoipa::openapi::RefOr<utoipa::openapi::response::Response>) {
    use utoipa::openapi::{Content, Ref, ResponseBuilder};
    let body = Content::new(Some(Ref::from_schema_name("ErrorBody")));
    (
        status.to_owned(),
        ResponseBuilder::new().description(description).content("application/json", body).build().into(),
    )
}

/// What any route may answer: a timeout and an internal failure.
#[derive(Debug)]
pub struct AnyRoute;

impl utoipa::IntoResponses for AnyRoute {
    fn responses() -> std::collections::BTreeMap<String, utoipa::openapi::RefOr<utoipa::openapi::response::Response>> {
        [
            refusal("408", "The request took longer than request_timeout_secs"),
            refusal("500", "The store failed, or the handler did"),
        ]
        .into()
    }
}

/// What a read route refuses when the read token is configured and missing.
#[derive(Debug)]
pub struct ReadRefusals;

impl utoipa::IntoResponses for ReadRefusals {
    fn responses() -> std::collections::BTreeMap<String, utoipa::openapi::RefOr<utoipa::openapi::response::Response>> {
        [refusal("401", "The read token is configured and was not presented")].into()
    }
}

/// What rollback and resume refuse, and the dashboard form's redirect.
#[derive(Debug)]
pub struct AdminRefusals;

impl utoipa::IntoResponses for AdminRefusals {
    fn responses() -> std::collections::BTreeMap<String, utoipa::openapi::RefOr<utoipa::openapi::response::Response>> {
        let redirect =
            utoipa::openapi::ResponseBuilder::new().description("From the dashboard's form: back to the dashboard");
        [
            ("303".to_owned(), redirect.build().into()),
            refusal("400", "A malformed form or version"),
            refusal("401", "No valid admin token"),
            refusal("413", "The body is over 4 KiB"),
            refusal("429", "Too many attempts from this source"),
            refusal("503", "No admin token configured"),
        ]
        .into()
    }
}

/// The description. Security schemes: three bearer tokens (ingest, read, admin) and the
/// edge's signed batches (a key id, a timestamp and an HMAC signature over both and the body).
#[derive(Debug, OpenApi)]
#[openapi(
    info(
        title = "prewarm trainer",
        description = "Ingests behaviour events and the edge's signals; serves the plan, status, \
                       metrics and the dashboard; rollback and resume of published models."
    ),
    paths(
        super::write::post_events,
        super::write::post_signals,
        super::write::rollback,
        super::write::resume,
        super::read::healthz,
        super::read::status,
        super::read::get_plan,
        super::read::metrics,
        super::read::dashboard,
        openapi_json,
    ),
    components(schemas(
        RollbackForm, ResumeForm, EventLineSchema, ErrorBody, Health, Status, Plan, SignalCounts, RolledBack, Resumed, EventsRefused, IngestReport,
        Rejection, EdgeSummary, Alert, SkillRow, RegionQuality, ProfileQuality, RegionPlan, PoolSteps, PlanStep
    )),
    modifiers(&SecuritySchemes),
)]
pub struct ApiDoc;

struct SecuritySchemes;

impl utoipa::Modify for SecuritySchemes {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        let bearer = |what: &str| {
            SecurityScheme::Http(
                HttpBuilder::new().scheme(HttpAuthScheme::Bearer).description(Some(what.to_owned())).build(),
            )
        };
        components.add_security_scheme("ingest_token", bearer("ingest_token (PREWARM_INGEST_TOKEN)"));
        components.add_security_scheme(
            "read_token",
            bearer("read_token (PREWARM_READ_TOKEN); when none is configured, reads are open"),
        );
        components.add_security_scheme(
            "admin_token",
            bearer("admin_token (PREWARM_ADMIN_TOKEN); the dashboard's form may send it as `token`"),
        );
        let description = format!(
            "The edge's key id; the batch also carries {TIMESTAMP_HEADER} (unix seconds) and \
             {SIGNATURE_HEADER} (hex HMAC-SHA256 of the timestamp and the body under that key)"
        );
        components.add_security_scheme(
            "signal_key",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                KEY_ID_HEADER.to_owned(),
                description,
            ))),
        );
        optional_bodies_without_null(openapi);
    }
}

/// An optional request body (`Option<Form>`) is derived as "null or the form", but a form has
/// no null: the body is simply absent (`required: false`, which the derive already says).
fn optional_bodies_without_null(openapi: &mut utoipa::openapi::OpenApi) {
    use utoipa::openapi::RefOr;
    use utoipa::openapi::schema::{Schema, SchemaType, Type};
    let is_null = |s: &RefOr<Schema>| matches!(s, RefOr::T(Schema::Object(o)) if matches!(o.schema_type, SchemaType::Type(Type::Null)));
    for item in openapi.paths.paths.values_mut() {
        let Some(body) = item.post.as_mut().and_then(|op| op.request_body.as_mut()) else { continue };
        for content in body.content.values_mut() {
            if let Some(RefOr::T(Schema::OneOf(one_of))) = &content.schema
                && one_of.items.len() == 2
                && let Some(null_at) = one_of.items.iter().position(is_null)
            {
                content.schema = Some(one_of.items[1 - null_at].clone());
            }
        }
    }
}

/// `GET /openapi.json`: this description. Open, like `/healthz`: it holds no data.
#[utoipa::path(get, path = "/openapi.json", tag = "meta",
    responses((status = 200, description = "The OpenAPI description", content_type = "application/json", body = Object)))]
pub(super) async fn openapi_json() -> Response {
    axum::Json(ApiDoc::openapi()).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_served_description_holds_the_event_schema_as_written_and_every_route() {
        let served = serde_json::to_value(ApiDoc::openapi()).expect("serialises");
        assert_eq!(served["components"]["schemas"]["EventLine"], EventLineSchema::json());
        let paths = served["paths"].as_object().expect("paths");
        for path in ["/v1/events", "/v1/signals", "/v1/rollback", "/v1/resume", "/healthz", "/v1/status", "/v1/plan"] {
            assert!(paths.contains_key(path), "{path} is described");
        }
        // The shared response sets reach every route that uses them.
        for (path, method, statuses) in [
            ("/v1/resume", "post", &["200", "303", "400", "401", "413", "429", "503", "408", "500"][..]),
            ("/v1/rollback", "post", &["200", "303", "404", "409", "401", "408", "500"][..]),
            ("/v1/status", "get", &["200", "401", "408", "500"][..]),
            ("/healthz", "get", &["200", "408", "500"][..]),
        ] {
            let responses = &served["paths"][path][method]["responses"];
            for status in statuses {
                assert!(responses.get(status).is_some(), "{path} documents {status}: {responses}");
            }
        }
        for scheme in ["ingest_token", "read_token", "admin_token", "signal_key"] {
            assert!(served["components"]["securitySchemes"].get(scheme).is_some(), "{scheme}");
        }
    }
}
