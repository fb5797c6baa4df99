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
//! - `unary`: the ordinary `ModelInfer` answered without tonic's generic
//!   machinery (the per-call cost of a cache hit); the rest goes to tonic
//! - `answer`: that answer written straight into its gRPC frame

mod answer;
mod error;
mod limit;
pub mod proto;
mod service;
mod unary;
mod wire;

use std::{convert::Infallible, sync::Arc};

use axum::{
    extract::Request,
    http::{header, HeaderMap},
    response::Response,
    routing::future::RouteFuture,
};
use futures::future::{BoxFuture, Either, FutureExt};
use tower::{util::MapRequestLayer, Service as _};

use self::{proto::grpc_inference_service_server::GrpcInferenceServiceServer, service::Service};
use crate::state::AppState;

/// Whether a request is gRPC (`application/grpc`, `application/grpc+proto`).
pub(crate) fn is_grpc(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"))
}

/// The gRPC service; unknown services and methods answer UNIMPLEMENTED.
/// Built once; each call costs a reference count.
#[derive(Clone)]
pub(crate) struct Grpc(Arc<Routes>);

struct Routes {
    state: Arc<AppState>,
    /// Every RPC, `ModelInfer` included, with the size limit.
    tonic: axum::Router,
}

/// What a call of [`Grpc`] (or of anything routing to it) returns.
pub(crate) type ResponseFuture =
    Either<RouteFuture<Infallible>, BoxFuture<'static, Result<Response, Infallible>>>;

impl Grpc {
    pub fn new(state: Arc<AppState>) -> Grpc {
        let max = state.config().max_request_size;
        let service = GrpcInferenceServiceServer::new(Service {
            state: state.clone(),
        })
        .max_decoding_message_size(usize::try_from(max).unwrap_or(usize::MAX));
        let tonic = tonic::service::Routes::new(service)
            .into_axum_router()
            .layer(MapRequestLayer::new(move |request: Request| {
                request.map(|body| limit::limit(body, max))
            }));
        Grpc(Arc::new(Routes { state, tonic }))
    }

    pub fn call(&mut self, request: Request) -> ResponseFuture {
        if unary::takes(&request) {
            let routes = self.0.clone();
            Either::Right(
                async move { Ok(unary::model_infer(&routes.state, &routes.tonic, request).await) }
                    .boxed(),
            )
        } else {
            let mut tonic = self.0.tonic.clone();
            Either::Left(tonic.call(request))
        }
    }
}
