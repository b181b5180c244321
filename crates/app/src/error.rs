//! The one error type of the HTTP API: every failure becomes a status code and a JSON body
//! `{"error": "...", "detail": ...}` here, and nowhere else.

use axum::Json;
use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::cache::CacheError;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The request cannot be understood (bad id, bad query parameter, malformed JSON).
    #[error("{message}")]
    BadRequest { message: String, detail: Option<Value> },

    /// The request is well-formed but a field's value is not acceptable.
    #[error("invalid value for `{field}`: {message}")]
    Invalid { field: String, message: String },

    #[error("{0} not found")]
    NotFound(String),

    /// A protected route without the right `Authorization: Bearer` token.
    #[error("admin token required: send `Authorization: Bearer <ADMIN_TOKEN>`")]
    Unauthorized,

    /// Redis is needed for this request and is not available; `key` names the key asked about, if any.
    #[error("redis unavailable")]
    CacheUnavailable { reason: String, key: Option<String> },

    /// The request took longer than the app allows any request.
    #[error("request timed out")]
    Timeout,

    /// Work this replica does one (or a few) at a time is already running: try again shortly.
    #[error("{what} is busy: try again shortly")]
    Busy { what: &'static str },

    /// A known path with a method it does not take.
    #[error("method not allowed")]
    MethodNotAllowed,

    /// The write conflicts with existing data (a duplicate SKU).
    #[error("{message}")]
    Conflict { field: &'static str, message: String },

    /// PostgreSQL cannot be reached (pool timeout, connection refused, query timeout).
    #[error("database unavailable")]
    DatabaseUnavailable(#[source] sqlx::Error),

    #[error("database error")]
    Database(#[source] sqlx::Error),

    /// A bug: a task panicked. Logged, never shown.
    #[error("internal error")]
    Internal(&'static str),

    /// A concurrent load of the same entry, which this request waited for, failed.
    #[error("the database query this request shared failed")]
    LoadFailed,
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn bad_request(message: impl Into<String>) -> Self {
        Error::BadRequest { message: message.into(), detail: None }
    }

    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        Error::Invalid { field: field.into(), message: message.into() }
    }

    /// A Redis failure, for routes that cannot answer without Redis.
    pub fn cache_unavailable(e: CacheError) -> Self {
        Error::CacheUnavailable { reason: e.to_string(), key: None }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            Error::BadRequest { .. } => StatusCode::BAD_REQUEST,
            Error::Invalid { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            Error::NotFound(_) => StatusCode::NOT_FOUND,
            Error::Unauthorized => StatusCode::UNAUTHORIZED,
            Error::CacheUnavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
            Error::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Error::Timeout => StatusCode::SERVICE_UNAVAILABLE,
            Error::Conflict { .. } => StatusCode::CONFLICT,
            Error::Busy { .. } => StatusCode::TOO_MANY_REQUESTS,
            Error::DatabaseUnavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Error::Database(_) => StatusCode::INTERNAL_SERVER_ERROR,
            Error::LoadFailed => StatusCode::SERVICE_UNAVAILABLE,
            Error::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn detail(&self) -> Value {
        match self {
            Error::BadRequest { detail, .. } => detail.clone().unwrap_or(Value::Null),
            Error::Invalid { field, message } => json!({ "field": field, "reason": message }),
            Error::Conflict { field, message } => json!({ "field": field, "reason": message }),
            Error::DatabaseUnavailable(_) => {
                json!("PostgreSQL is not reachable; cached entries are still served")
            }
            Error::CacheUnavailable { reason, .. } => Value::String(reason.clone()),
            Error::NotFound(_)
            | Error::Database(_)
            | Error::Unauthorized
            | Error::Busy { .. }
            | Error::LoadFailed
            | Error::Internal(_)
            | Error::MethodNotAllowed
            | Error::Timeout => Value::Null,
        }
    }
}

/// Classifies a database error: connection-level failures are 503 (the caller may retry), constraint
/// violations name the field at fault, anything else is an internal error.
impl From<sqlx::Error> for Error {
    fn from(e: sqlx::Error) -> Self {
        match &e {
            sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::Io(_)
            | sqlx::Error::Tls(_)
            | sqlx::Error::Protocol(_)
            | sqlx::Error::WorkerCrashed => Error::DatabaseUnavailable(e),
            sqlx::Error::Database(db) => match constraint_field(db.constraint()) {
                Some(("sku", _)) => {
                    Error::Conflict { field: "sku", message: "a product with this SKU already exists".into() }
                }
                Some((field, message)) => Error::invalid(field, message),
                // 57P01 admin_shutdown, 57P03 cannot_connect_now: the server is going away; 57014 a statement
                // past `statement_timeout`, 55P03 a lock past `lock_timeout`: busy, the caller may retry.
                None if matches!(db.code().as_deref(), Some("57P01" | "57P02" | "57P03" | "57014" | "55P03")) => {
                    Error::DatabaseUnavailable(e)
                }
                // Class 22, data exception (a NUL byte, a number out of range): the input's fault, not ours.
                // The checks in `catalog::input` name the field first; this is the net under them.
                None if db.code().is_some_and(|c| c.starts_with("22")) => {
                    Error::invalid("body", "a value PostgreSQL cannot store")
                }
                None => Error::Database(e),
            },
            _ => Error::Database(e),
        }
    }
}

/// Maps the constraint names of `init.sql` to the API field they guard.
fn constraint_field(constraint: Option<&str>) -> Option<(&'static str, &'static str)> {
    Some(match constraint? {
        "products_sku_key" => ("sku", "already exists"),
        "products_name_not_blank" => ("name", "must not be blank"),
        "products_price_nonnegative" => ("price", "must be at least 0"),
        "products_stock_nonnegative" => ("stock", "must be at least 0"),
        "products_category_id_fkey" => ("category_id", "no category with this id"),
        _ => return None,
    })
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        let status = self.status();
        match &self {
            Error::Database(e) => tracing::error!(error = %e, "database error"),
            Error::DatabaseUnavailable(e) => tracing::warn!(error = %e, "database unavailable"),
            Error::Internal(what) => tracing::error!(what, "internal error"),
            _ => {}
        }
        let mut body = json!({ "error": self.to_string(), "detail": self.detail() });
        if let Error::CacheUnavailable { key: Some(key), .. } = &self {
            body["key"] = Value::String(key.clone());
        }
        if matches!(self, Error::Busy { .. }) {
            return (status, [(axum::http::header::RETRY_AFTER, "1")], Json(body)).into_response();
        }
        if matches!(self, Error::Unauthorized) {
            return (status, [(axum::http::header::WWW_AUTHENTICATE, "Bearer")], Json(body)).into_response();
        }
        (status, Json(body)).into_response()
    }
}

impl From<JsonRejection> for Error {
    fn from(r: JsonRejection) -> Self {
        let message = r.body_text();
        match r {
            // Well-formed JSON of the wrong shape (unknown field, wrong type, missing field): name the field.
            JsonRejection::JsonDataError(_) => {
                let reason =
                    message.trim_start_matches("Failed to deserialize the JSON body into the target type: ").to_owned();
                Error::invalid(field_of_serde_error(&reason), reason)
            }
            _ => Error::bad_request(message),
        }
    }
}

/// The field a serde error is about: `unknown field `x`` names it, otherwise serde_path_to_error puts the
/// path before the first `: ` ("price: invalid type ...").
fn field_of_serde_error(reason: &str) -> String {
    for marker in ["unknown field `", "missing field `"] {
        if let Some((_, rest)) = reason.split_once(marker)
            && let Some((field, _)) = rest.split_once('`')
        {
            return field.to_owned();
        }
    }
    match reason.split_once(": ") {
        Some((path, _)) if !path.contains(' ') && path != "." => path.to_owned(),
        _ => "body".to_owned(),
    }
}

impl From<QueryRejection> for Error {
    fn from(r: QueryRejection) -> Self {
        Error::bad_request(r.body_text())
    }
}

impl From<PathRejection> for Error {
    fn from(r: PathRejection) -> Self {
        Error::bad_request(r.body_text())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serde_errors_name_their_field() {
        assert_eq!(field_of_serde_error("unknown field `colour`, expected one of `name`"), "colour");
        assert_eq!(field_of_serde_error("missing field `sku` at line 1 column 2"), "sku");
        assert_eq!(field_of_serde_error("price: invalid type: string \"x\", expected f64"), "price");
        assert_eq!(field_of_serde_error("invalid type: map, expected a string"), "body");
    }

    #[test]
    fn routing_errors_have_their_status() {
        assert_eq!(Error::Timeout.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(Error::MethodNotAllowed.status(), StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(Error::Timeout.to_string(), "request timed out");
    }

    #[test]
    fn constraint_names_map_to_fields() {
        assert_eq!(constraint_field(Some("products_price_nonnegative")).map(|f| f.0), Some("price"));
        assert_eq!(constraint_field(Some("something_else")), None);
        assert_eq!(constraint_field(None), None);
    }
}
