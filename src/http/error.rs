//! The only place an [`Error`] becomes an HTTP status.
//!
//! Bodies are KServe-shaped JSON, `{"error": "..."}`, except on the OpenAI
//! routes, whose handlers (and token check) answer [`OpenAiError`]:
//! `{"error": {"message", "type", "param", "code"}}`. Overload and shutdown
//! carry `Retry-After` so well-behaved clients back off.

use axum::{
    http::{header, HeaderValue, StatusCode},
    response::{IntoResponse, Response},
    Json,
};

use serde_json::json;

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

/// An error in OpenAI's shape.
pub struct OpenAiError(Error);

impl From<Error> for OpenAiError {
    fn from(e: Error) -> Self {
        OpenAiError(e)
    }
}

impl IntoResponse for OpenAiError {
    fn into_response(self) -> Response {
        let status = self.0.status();
        let kind = match &self.0 {
            Error::Overloaded(_) => "rate_limit_error",
            Error::Unauthorized => "authentication_error",
            Error::NotFound(_) => "not_found_error",
            _ if status.is_client_error() => "invalid_request_error",
            _ => "server_error",
        };
        let body = json!({"error": {"message": self.0.to_string(), "type": kind, "param": null, "code": null}});
        let mut response = (status, Json(body)).into_response();
        if matches!(self.0, Error::Overloaded(_) | Error::ShuttingDown) {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        response
    }
}
