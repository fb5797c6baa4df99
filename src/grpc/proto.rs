//! Messages and service of `proto/grpc_service.proto`, generated at build
//! time by `build.rs`.

#![allow(clippy::all, clippy::pedantic, missing_docs)]

tonic::include_proto!("inference");
