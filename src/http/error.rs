//! The only place an [`Error`] becomes an HTTP status.
//!
//! Bodies are KServe-shaped JSON, `{"error": "..."}`. Overload and shutdown
//! carry `Retry-After` so well-behaved clients back off.

use axum::{
    http::{header, StatusCode},
    response::{IntoResponse, Response},
    Json,
};

use crate::error::Error;

impl Error {
    pub fn status(&self) -> StatusCode {
        match self {
            Error::BadKey { .. } | Error::BadRequest(_) => StatusCode::BAD_REQUEST,
            Error::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Error::NotFound(_) => StatusCode::NOT_FOUND,
            Error::Unauthorized => StatusCode::UNAUTHORIZED,
            Error::Overloaded(_) => StatusCode::TOO_MANY_REQUESTS,
            Error::ShuttingDown | Error::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Error::Timeout(_) => StatusCode::GATEWAY_TIMEOUT,
            Error::Compute(_) | Error::Storage(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        let status = self.status();
        let body = Json(serde_json::json!({ "error": self.to_string() }));
        match self {
            Error::Overloaded(_) | Error::ShuttingDown => {
                (status, [(header::RETRY_AFTER, "1")], body).into_response()
            }
            Error::Unauthorized => {
                (status, [(header::WWW_AUTHENTICATE, "Bearer")], body).into_response()
            }
            _ => (status, body).into_response(),
        }
    }
}

/// Unknown route.
pub async fn not_found() -> Error {
    Error::NotFound("no such endpoint".into())
}

/// Known route, wrong method.
pub async fn method_not_allowed() -> Response {
    let body = Json(serde_json::json!({ "error": "method not allowed on this endpoint" }));
    (StatusCode::METHOD_NOT_ALLOWED, body).into_response()
}
