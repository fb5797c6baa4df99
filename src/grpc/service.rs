//! The handlers of `inference.GRPCInferenceService`. Infer goes through
//! [`crate::infer::Inference`] like REST does, so results are memoized per
//! row and shared between the protocols.

use std::{pin::Pin, sync::Arc};

use axum::http::HeaderMap;
use futures::{Stream, StreamExt};
use tonic::{metadata::MetadataMap, Request, Response, Status, Streaming};

use super::{
    proto::{
        grpc_inference_service_server::GrpcInferenceService,
        model_metadata_response::TensorMetadata, ModelInferRequest, ModelInferResponse,
        ModelMetadataRequest, ModelMetadataResponse, ModelReadyRequest, ModelReadyResponse,
        ModelStreamInferResponse, ServerLiveRequest, ServerLiveResponse, ServerMetadataRequest,
        ServerMetadataResponse, ServerReadyRequest, ServerReadyResponse,
    },
    wire,
};
use crate::{
    error::Result,
    infer::{backend::IoSpec, registry::Model, Request as InferRequest, Response as InferResponse},
    memo::Policy,
    state::{cache_policy, AppState},
};

pub struct Service {
    pub state: Arc<AppState>,
}

/// The bearer token check, on every RPC but the health checks.
fn authorize(state: &AppState, metadata: &HeaderMap) -> Result<(), Status> {
    let given = metadata.get("authorization").map(|v| v.as_bytes());
    Ok(state.authorize(given)?)
}

impl Service {
    fn authorize(&self, metadata: &MetadataMap) -> Result<(), Status> {
        authorize(&self.state, metadata.as_ref())
    }
}

/// An infer's result with what its answer repeats of the request.
pub struct Answer {
    pub model: Arc<Model>,
    pub id: String,
    pub response: InferResponse,
}

impl Answer {
    /// The answer as a message (what tonic sends).
    fn message(self) -> ModelInferResponse {
        wire::encode(self.model.name(), self.id, self.response)
    }
}

/// `ModelInfer` after its message is decoded, for tonic's handler and for
/// `unary`'s: the token, the cache policy, the infer.
pub async fn model_infer(
    state: &AppState,
    metadata: &HeaderMap,
    request: ModelInferRequest,
) -> Result<Answer, Status> {
    authorize(state, metadata)?;
    Ok(infer(state, request, cache_policy(metadata)).await?)
}

/// One infer, as REST runs it.
async fn infer(state: &AppState, request: ModelInferRequest, policy: Policy) -> Result<Answer> {
    let model = state.model(&request.model_name, Some(&request.model_version))?;
    let decoded = wire::decode(request, state.config().max_request_size)?;
    let response = state
        .inference
        .infer(
            model.name(),
            InferRequest {
                inputs: decoded.inputs,
                outputs: decoded.outputs,
                policy,
            },
        )
        .await?;
    Ok(Answer {
        model,
        id: decoded.id,
        response,
    })
}

fn tensors(specs: &[IoSpec]) -> Vec<TensorMetadata> {
    specs
        .iter()
        .map(|s| TensorMetadata {
            name: s.name.clone(),
            datatype: s.datatype.name().to_string(),
            shape: s.shape.clone(),
        })
        .collect()
}

type InferStream = Pin<Box<dyn Stream<Item = Result<ModelStreamInferResponse, Status>> + Send>>;

#[tonic::async_trait]
impl GrpcInferenceService for Service {
    async fn server_live(
        &self,
        _: Request<ServerLiveRequest>,
    ) -> Result<Response<ServerLiveResponse>, Status> {
        Ok(Response::new(ServerLiveResponse { live: true }))
    }

    async fn server_ready(
        &self,
        _: Request<ServerReadyRequest>,
    ) -> Result<Response<ServerReadyResponse>, Status> {
        let ready = self.state.inference.registry.ready();
        Ok(Response::new(ServerReadyResponse { ready }))
    }

    async fn model_ready(
        &self,
        request: Request<ModelReadyRequest>,
    ) -> Result<Response<ModelReadyResponse>, Status> {
        self.authorize(request.metadata())?;
        let r = request.get_ref();
        // Like Triton: an unknown model is not ready, not an error.
        let ready = self.state.model(&r.name, Some(&r.version)).is_ok();
        Ok(Response::new(ModelReadyResponse { ready }))
    }

    async fn server_metadata(
        &self,
        request: Request<ServerMetadataRequest>,
    ) -> Result<Response<ServerMetadataResponse>, Status> {
        self.authorize(request.metadata())?;
        Ok(Response::new(ServerMetadataResponse {
            name: "infercache".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            extensions: vec![],
        }))
    }

    async fn model_metadata(
        &self,
        request: Request<ModelMetadataRequest>,
    ) -> Result<Response<ModelMetadataResponse>, Status> {
        self.authorize(request.metadata())?;
        let r = request.get_ref();
        let model = self.state.model(&r.name, Some(&r.version))?;
        Ok(Response::new(ModelMetadataResponse {
            name: model.name().to_string(),
            versions: vec!["1".into()],
            platform: "onnxruntime_onnx".into(),
            inputs: tensors(&model.inputs),
            outputs: tensors(&model.outputs),
        }))
    }

    async fn model_infer(
        &self,
        request: Request<ModelInferRequest>,
    ) -> Result<Response<ModelInferResponse>, Status> {
        let (metadata, _, request) = request.into_parts();
        let answer = model_infer(&self.state, metadata.as_ref(), request).await?;
        let status = answer.response.status;
        let mut response = Response::new(answer.message());
        response.metadata_mut().insert(
            "x-cache",
            tonic::metadata::MetadataValue::from_static(status.as_str()),
        );
        Ok(response)
    }

    type ModelStreamInferStream = InferStream;

    /// Answers each request in order; a failed one answers with
    /// `error_message` and the stream goes on. Ends when the client's
    /// stream does, or when the server begins to shut down.
    async fn model_stream_infer(
        &self,
        request: Request<Streaming<ModelInferRequest>>,
    ) -> Result<Response<InferStream>, Status> {
        self.authorize(request.metadata())?;
        let policy = cache_policy(request.metadata().as_ref());
        let state = self.state.clone();
        let mut stopping = state.stopping.clone();
        let answers = request.into_inner().then(move |next| {
            let state = state.clone();
            async move {
                let answer = match infer(&state, next?, policy).await {
                    Ok(answer) => ModelStreamInferResponse {
                        error_message: String::new(),
                        infer_response: Some(answer.message()),
                    },
                    Err(e) => ModelStreamInferResponse {
                        error_message: e.to_string(),
                        infer_response: None,
                    },
                };
                Ok(answer)
            }
        });
        let stop = async move {
            let _ = stopping.wait_for(|s| *s).await;
        };
        Ok(Response::new(Box::pin(answers.take_until(stop))))
    }
}
