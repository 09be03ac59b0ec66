//! The OpenAPI 3.1 document, generated from the handlers' annotations and
//! served at `GET /openapi.json`. `api/openapi.json` is a committed copy
//! that `api/tests/openapi.rs` keeps equal to it; regenerate it with
//! `UPDATE_OPENAPI=1 cargo test -p api --test openapi`.
//!
//! The error answers that come from layers rather than handlers (the
//! `Idempotency-Key` middleware, the body checks, panics, dependencies
//! down) are added to every operation by [`ErrorResponses`], so that each
//! operation lists every 4xx/5xx it can answer.

use std::sync::OnceLock;

use axum::{
    http::{header, HeaderValue},
    response::{IntoResponse, Response},
    routing::get,
    Router,
};
use runtime::http::problem::{Problem, CONTENT_TYPE as PROBLEM};
use utoipa::{
    openapi::{
        path::{HttpMethod, Operation, Parameter, ParameterBuilder, ParameterIn},
        response::{Response as ApiResponse, ResponseBuilder},
        schema::{Object, Type},
        security::{HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme},
        Content, HeaderBuilder, Ref, RefOr, Required,
    },
    Modify, OpenApi,
};

use crate::{
    requests,
    routes::{
        self,
        checkout::{self, CheckoutBody, CheckoutMode},
    },
};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Checkout platform API",
        description = "The standard web-scale data management benchmark API (stock, payment, \
            orders), the asynchronous request-record extension and the operations endpoints. \
            Every 4xx/5xx answer is an RFC 9457 problem document (`application/problem+json`, \
            `type` is `about:blank`, `title` the status phrase, `code` a stable slug); \
            every 503 carries `Retry-After`. Every POST accepts an `Idempotency-Key`.",
        license(name = "MIT", identifier = "MIT"),
    ),
    paths(
        routes::stock::create,
        routes::stock::find,
        routes::stock::add,
        routes::stock::subtract,
        routes::stock::batch_init,
        routes::payment::create_user,
        routes::payment::find_user,
        routes::payment::add_funds,
        routes::payment::pay,
        routes::payment::batch_init,
        routes::orders::create,
        routes::orders::find,
        routes::orders::add_item,
        checkout::checkout,
        routes::orders::batch_init,
        checkout::get_request,
        runtime::http::ops::health,
        runtime::http::ops::ready,
        runtime::http::ops::metrics,
        openapi_json,
    ),
    components(schemas(Problem, requests::RequestRecord, CheckoutBody, CheckoutMode)),
    modifiers(&ErrorResponses),
    tags(
        (name = "stock"), (name = "payment"), (name = "orders"),
        (name = "requests", description = "The asynchronous request-record extension"),
        (name = "operations", description = "Health, readiness, metrics, this document"),
    )
)]
pub struct ApiDoc;

/// The document, as served and committed (pretty JSON, trailing newline).
pub fn json() -> &'static str {
    static DOC: OnceLock<String> = OnceLock::new();
    DOC.get_or_init(|| {
        let mut s = ApiDoc::openapi()
            .to_pretty_json()
            .unwrap_or_else(|e| format!("{{\"error\": \"cannot render the document: {e}\"}}"));
        s.push('\n');
        s
    })
}

/// This document.
#[utoipa::path(get, path = "/openapi.json", tag = "operations",
    responses((status = 200, description = "This OpenAPI 3.1 document",
        content_type = "application/json", body = Object)))]
pub async fn openapi_json() -> Response {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        json(),
    )
        .into_response()
}

pub fn routes<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new().route("/openapi.json", get(openapi_json))
}

/// The shared error responses (`#/components/responses/...`) and which
/// operations can answer each.
struct ErrorResponses;

/// (status, component name, why).
const ERRORS: &[(u16, &str, &str)] = &[
    (
        400,
        "BadRequest",
        "Malformed input: a path segment that is not a non-negative 64-bit \
        integer or is out of range, an ID that is empty, longer than 128 characters or has \
        control characters, a bad query parameter, \
        header (`Idempotency-Key`, `Prefer`) or JSON body, a refused `callback_url`",
    ),
    (
        401,
        "Unauthorized",
        "The setup endpoints are behind a token (`SETUP_ENDPOINTS=token`) and the request \
        has none or a wrong one: send `Authorization: Bearer <SETUP_TOKEN>`",
    ),
    (
        404,
        "NotFound",
        "Unknown ID (item, user, order, request), or no such endpoint (also the setup \
        endpoints where a deployment switched them off, `SETUP_ENDPOINTS=off`)",
    ),
    (
        409,
        "Conflict",
        "Refused by the current state: not enough stock or credit, a failed \
        checkout (with `request_id` and `reason`), a `batch_init` while another runs on \
        the same service, or a request with the same `Idempotency-Key` still running",
    ),
    (413, "PayloadTooLarge", "The body is larger than 64 KiB"),
    (
        415,
        "UnsupportedMediaType",
        "A body whose Content-Type is not JSON",
    ),
    (
        422,
        "Unprocessable",
        "This `Idempotency-Key` was used for a different request",
    ),
    (
        500,
        "Internal",
        "A fault of ours (a bug); nothing was changed that a retry would double",
    ),
    (
        503,
        "Unavailable",
        "A dependency (PostgreSQL, NATS, a service) is unreachable past every \
        retry; retry after `Retry-After` seconds. About an accepted checkout (a plain \
        checkout whose outcome an outage kept unknown past its wait) it carries `request_id` \
        and a `Location` to poll",
    ),
];

impl Modify for ErrorResponses {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        let components = doc.components.get_or_insert_with(Default::default);
        for &(status, name, why) in ERRORS {
            components
                .responses
                .insert(name.to_owned(), RefOr::T(error_response(status, why)));
        }
        components.security_schemes.insert(
            SETUP_SCHEME.to_owned(),
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "`SETUP_TOKEN`, needed by the setup endpoints where a deployment \
                         set `SETUP_ENDPOINTS=token`",
                    ))
                    .build(),
            ),
        );
        for (path, item) in doc.paths.paths.iter_mut() {
            for method in [HttpMethod::Get, HttpMethod::Post] {
                let op = match method {
                    HttpMethod::Get => item.get.as_mut(),
                    _ => item.post.as_mut(),
                };
                let Some(op) = op else { continue };
                let is_post = matches!(method, HttpMethod::Post);
                if is_post {
                    add_idempotency_key(op);
                }
                if is_setup(path) {
                    // Open by default, or behind the token.
                    op.security = Some(vec![
                        SecurityRequirement::default(),
                        SecurityRequirement::new(SETUP_SCHEME, Vec::<String>::new()),
                    ]);
                }
                for status in statuses(path, is_post, op) {
                    let (_, name, _) = ERRORS
                        .iter()
                        .find(|(s, _, _)| *s == status)
                        .copied()
                        .unwrap_or((500, "Internal", ""));
                    op.responses
                        .responses
                        .entry(status.to_string())
                        .or_insert_with(|| RefOr::Ref(Ref::from_response_name(name)));
                }
            }
        }
    }
}

/// Which error statuses an operation can answer.
fn statuses(path: &str, is_post: bool, op: &Operation) -> Vec<u16> {
    let params = op.parameters.as_deref().unwrap_or_default();
    let has = |kind: ParameterIn| params.iter().any(|p| p.parameter_in == kind);
    let mut out = Vec::new();
    // Every POST has the Idempotency-Key header, which may be malformed.
    if is_post || !params.is_empty() {
        out.push(400);
    }
    if is_setup(path) {
        out.push(401);
    }
    if has(ParameterIn::Path) {
        out.push(404);
    }
    if is_post {
        out.extend([409, 413, 415, 422]);
    }
    out.push(500);
    // Everything but liveness and these documents needs a dependency.
    if !matches!(path, "/health" | "/metrics" | "/openapi.json") {
        out.push(503);
    }
    out
}

/// The security scheme of the setup endpoints.
const SETUP_SCHEME: &str = "setup_token";

fn is_setup(path: &str) -> bool {
    crate::setup::PATHS.iter().any(|p| path.starts_with(p))
}

fn error_response(status: u16, why: &str) -> ApiResponse {
    let mut r = ResponseBuilder::new().description(why).content(
        PROBLEM,
        Content::new(Some(Ref::from_schema_name("Problem"))),
    );
    if status == 503 {
        r = r.header(
            "Retry-After",
            HeaderBuilder::new()
                .schema(Object::with_type(Type::Integer))
                .description(Some("Seconds to wait before retrying"))
                .build(),
        );
    }
    r.build()
}

fn add_idempotency_key(op: &mut Operation) {
    let param: Parameter = ParameterBuilder::new()
        .name("Idempotency-Key")
        .parameter_in(ParameterIn::Header)
        .required(Required::False)
        .description(Some(
            "Makes the POST safe to repeat: a repeat with the same key replays the first \
             answer and changes nothing; the same key with a different request is 422, while \
             the first is still running 409. 1 to 255 printable ASCII characters, a token or \
             a quoted structured-field string; anything else is 400. A 503 whose outcome is \
             unknown (`code: outcome-unknown`) is replayed too, never run again. Remembered \
             24 h by default.",
        ))
        .schema(Some(
            utoipa::openapi::schema::ObjectBuilder::new()
                .schema_type(Type::String)
                .min_length(Some(1))
                .max_length(Some(255))
                .pattern(Some("^[\\x20-\\x7E]+$")),
        ))
        .build();
    op.parameters.get_or_insert_with(Vec::new).push(param);
}
