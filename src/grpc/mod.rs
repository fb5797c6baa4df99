//! KServe v2 / Open Inference Protocol over gRPC
//! (`inference.GRPCInferenceService`, what `tritonclient.grpc` speaks), on
//! the same listener as HTTP: the HTTP front end hands over every request
//! whose content type is `application/grpc` (HTTP/2, with prior knowledge
//! on TCP and Unix sockets alike).
//!
//! - [`proto`]: messages and service generated from `proto/grpc_service.proto`
//! - `wire`: requests and responses to and from canonical tensors
//! - `service`: the handlers
//! - `error`: the one mapping from [`crate::Error`] to a status code
//! - `limit`: messages larger than `max_request_size` refused from their
//!   length prefix, before they are read

mod error;
mod limit;
pub mod proto;
mod service;
mod wire;

use std::sync::Arc;

use axum::{
    extract::Request,
    http::{header, HeaderMap},
};
use tower::util::MapRequestLayer;

use self::{proto::grpc_inference_service_server::GrpcInferenceServiceServer, service::Service};
use crate::state::AppState;

/// Whether a request is gRPC (`application/grpc`, `application/grpc+proto`).
pub fn is_grpc(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"))
}

/// The gRPC service; unknown services and methods answer UNIMPLEMENTED.
pub fn routes(state: Arc<AppState>) -> axum::Router {
    let max = state.config().max_request_size;
    let service = GrpcInferenceServiceServer::new(Service { state })
        .max_decoding_message_size(usize::try_from(max).unwrap_or(usize::MAX));
    tonic::service::Routes::new(service)
        .into_axum_router()
        .layer(MapRequestLayer::new(move |request: Request| {
            request.map(|body| limit::limit(body, max))
        }))
}
