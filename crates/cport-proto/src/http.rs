//! HTTP/1.1 for a static file server: request heads in, response heads out.
//!
//! Sans-I/O: the server reads bytes into a buffer, calls [`parse_request`],
//! decides what to serve with the path, range and conditional rules here, and
//! writes a [`ResponseHead`] before sending the file itself. Every refusal is
//! an [`HttpError`] with one status code and a close flag, so answering is
//! never ad hoc.
//!
//! A typical request, in order:
//! 1. [`parse_request`] (400, 413, 414, 431, 505 refuse the stream);
//! 2. [`check_method`] (405, or 501 for an unrecognised method);
//! 3. [`decode_path`] then [`resolve_under_root`] (400, 404);
//! 4. [`not_modified`] (304), then [`if_range_allows`] and [`parse_range`]
//!    (206, 416);
//! 5. [`ResponseHead::write`] with [`content_type`] and [`etag`].
//!
//! [`RequestStream`] runs step 1 over a connection's received chunks:
//! pipelined heads, and upload bodies (`Content-Length` or chunked, see
//! [`ChunkedDecoder`]) handed out piece by piece.

mod chunked;
mod conditional;
mod digest;
mod error;
mod path;
mod range;
mod request;
mod response;
mod stream;

pub use chunked::{ChunkedDecoder, Decoded};
pub use conditional::{etag, if_range_allows, not_modified};
pub use digest::{parse_repr_digest, repr_digest, DigestError};
pub use error::{reason_phrase, HttpError};
pub use path::{decode_path, resolve_under_root, CanonicalRoot, DecodedPath, PathError};
pub use range::{parse_range, RangeOutcome};
pub use request::{
    check_method, method_refusal, parse_request, Limits, Method, Parse, Request, UploadHeaders, HEADER_SLOTS,
    KNOWN_METHODS,
};
pub use response::{
    content_type, error_response, http_date, unsatisfiable_response, ContentRange, DateCache, ResponseHead, ALLOW,
};
pub use stream::{Event, Fed, Flow, RequestStream};

#[cfg(test)]
mod tests;
