//! A request over the message size limit is answered RESOURCE_EXHAUSTED,
//! the gRPC convention (grpc-go and grpc-java do so), not tonic's
//! OUT_OF_RANGE. Tonic rejects it while decoding, before any handler runs,
//! with a trailers-only response: that response is rewritten here.

use tonic::body::Body;

/// Tonic's message for a request over `max_decoding_message_size`.
const TONIC_TOO_LARGE: &str = "Error, decoded message length too large: ";

pub fn too_large_is_resource_exhausted(res: http::Response<Body>) -> http::Response<Body> {
    let Some(status) = tonic::Status::from_header_map(res.headers()) else {
        return res;
    };
    if status.code() != tonic::Code::OutOfRange {
        return res;
    }
    let Some(detail) = status.message().strip_prefix(TONIC_TOO_LARGE) else {
        return res;
    };
    tonic::Status::resource_exhausted(format!(
        "request too large: {detail} (split the request, or send less at once)"
    ))
    .into_http()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code_and_message(res: &http::Response<Body>) -> (tonic::Code, String) {
        let s = tonic::Status::from_header_map(res.headers()).expect("a status");
        (s.code(), s.message().to_string())
    }

    #[test]
    fn only_tonics_size_error_is_rewritten() {
        let too_large = tonic::Status::out_of_range(format!(
            "{TONIC_TOO_LARGE}found 5000000 bytes, the limit is: 4194304 bytes"
        ));
        let (code, msg) = code_and_message(&too_large_is_resource_exhausted(too_large.into_http()));
        assert_eq!(code, tonic::Code::ResourceExhausted);
        assert!(
            msg.starts_with("request too large: found 5000000 bytes"),
            "{msg}"
        );

        let other = tonic::Status::out_of_range("offset past the end of the log");
        let (code, _) = code_and_message(&too_large_is_resource_exhausted(other.into_http()));
        assert_eq!(code, tonic::Code::OutOfRange);
    }
}
