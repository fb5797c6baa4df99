//! The only place an [`Error`] becomes a gRPC status, with the codes
//! Triton answers for the same failures (the twin of `http::error`).

use tonic::{Code, Status};

use crate::error::Error;

impl Error {
    pub fn grpc_code(&self) -> Code {
        match self {
            Error::BadKey { .. } | Error::BadRequest(_) | Error::TooLarge { .. } => {
                Code::InvalidArgument
            }
            Error::NotFound(_) => Code::NotFound,
            Error::Unauthorized => Code::Unauthenticated,
            Error::Overloaded(_) => Code::ResourceExhausted,
            Error::ShuttingDown | Error::Unavailable(_) => Code::Unavailable,
            Error::Timeout(_) => Code::DeadlineExceeded,
            Error::Compute(_) | Error::Storage(_) => Code::Internal,
        }
    }
}

impl From<Error> for Status {
    fn from(e: Error) -> Status {
        Status::new(e.grpc_code(), e.to_string())
    }
}
