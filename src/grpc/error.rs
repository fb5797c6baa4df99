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

#[cfg(test)]
mod tests {
    use super::*;

    /// The codes Triton's clients expect for each kind of failure.
    #[test]
    fn errors_map_to_tritons_codes() {
        let cases = [
            (Error::NotFound("no model".into()), Code::NotFound),
            (Error::BadRequest("shape".into()), Code::InvalidArgument),
            (
                Error::TooLarge {
                    limit: 1,
                    over: crate::error::Limit::ValueSize,
                },
                Code::InvalidArgument,
            ),
            (
                Error::Overloaded("the model's queue"),
                Code::ResourceExhausted,
            ),
            (
                Error::Unavailable("no ONNX Runtime".into()),
                Code::Unavailable,
            ),
            (Error::ShuttingDown, Code::Unavailable),
            (Error::Unauthorized, Code::Unauthenticated),
            (
                Error::Timeout(std::time::Duration::from_secs(1)),
                Code::DeadlineExceeded,
            ),
            (Error::Compute("boom".into()), Code::Internal),
        ];
        for (error, code) in cases {
            let message = error.to_string();
            let status = Status::from(error);
            assert_eq!(status.code(), code, "{message}");
            assert_eq!(status.message(), message);
        }
    }
}
