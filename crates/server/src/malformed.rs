//! A request whose message does not decode is the caller's mistake: tonic
//! answers it INTERNAL (as the gRPC status-code guide has it for a peer's
//! garbage), which tells a client the server failed and hides the cause. This
//! layer answers INVALID_ARGUMENT instead, naming what did not decode.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use tonic::{Code, Status};

/// What prost says of bytes that are not the message.
const UNDECODABLE: &str = "failed to decode Protobuf message";

#[derive(Debug, Clone, Copy, Default)]
pub struct MalformedRequestLayer;

impl<S> tower::Layer<S> for MalformedRequestLayer {
    type Service = MalformedRequest<S>;
    fn layer(&self, inner: S) -> Self::Service {
        MalformedRequest { inner }
    }
}

#[derive(Debug, Clone)]
pub struct MalformedRequest<S> {
    inner: S,
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl<S, B, R> tower::Service<http::Request<B>> for MalformedRequest<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<R>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<Result<S::Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let answer = self.inner.call(request);
        Box::pin(async move {
            let mut response = answer.await?;
            as_invalid_argument(&mut response);
            Ok(response)
        })
    }
}

/// Rewrites a trailers-only INTERNAL answer to an undecodable request (a
/// unary call is refused before its handler runs, so the status is in the
/// headers).
fn as_invalid_argument<R>(response: &mut http::Response<R>) {
    let Some(status) = Status::from_header_map(response.headers()) else {
        return;
    };
    if status.code() == Code::Internal && status.message().starts_with(UNDECODABLE) {
        let refused = Status::invalid_argument(format!(
            "the request is not a valid protobuf message of this method ({})",
            status.message()
        ));
        if refused.add_header(response.headers_mut()).is_err() {
            tracing::debug!("could not rewrite a malformed request's status");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(status: &Status) -> http::Response<()> {
        let mut response = http::Response::new(());
        status.add_header(response.headers_mut()).expect("headers");
        response
    }

    #[test]
    fn undecodable_requests_are_invalid_arguments_and_nothing_else_changes() {
        let mut response = answer(&Status::internal(
            "failed to decode Protobuf message: invalid wire type value: 7",
        ));
        as_invalid_argument(&mut response);
        let status = Status::from_header_map(response.headers()).expect("a status");
        assert_eq!(status.code(), Code::InvalidArgument);
        assert!(status.message().contains("invalid wire type"), "{status:?}");

        for untouched in [
            Status::internal("internal error (logged on the server)"),
            Status::not_found("failed to decode Protobuf message"),
        ] {
            let mut response = answer(&untouched);
            as_invalid_argument(&mut response);
            let status = Status::from_header_map(response.headers()).expect("a status");
            assert_eq!(status.code(), untouched.code());
        }
        let mut ok = http::Response::new(());
        as_invalid_argument(&mut ok);
        assert!(ok.headers().is_empty());
    }
}
