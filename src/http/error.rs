//! `ParseError`: why a message from the network was refused, and its one status mapping.

use std::fmt;

/// A malformed or refused HTTP/1 message. Requests map to the status in [`ParseError::status`];
/// the same errors in an upstream response always become 502.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParseError {
    /// Grammar or semantic violation (400); the text names the rule.
    BadRequest(&'static str),
    /// Request line longer than the limit (414).
    UriTooLong,
    /// Header section or one field over the size/count limit (431).
    HeaderTooLarge,
    /// Declared or streamed body over the route's limit (413).
    BodyTooLarge,
    /// An unknown transfer coding or a method we will not handle (501).
    NotImplemented(&'static str),
    /// HTTP major version other than 1 (505).
    VersionNotSupported,
    /// An `Expect` value other than `100-continue` (417).
    ExpectationFailed,
}

impl ParseError {
    /// The status sent to the client for this error in a request.
    pub fn status(self) -> u16 {
        match self {
            ParseError::BadRequest(_) => 400,
            ParseError::UriTooLong => 414,
            ParseError::HeaderTooLarge => 431,
            ParseError::BodyTooLarge => 413,
            ParseError::NotImplemented(_) => 501,
            ParseError::VersionNotSupported => 505,
            ParseError::ExpectationFailed => 417,
        }
    }
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ParseError::BadRequest(why) => write!(f, "bad request: {why}"),
            ParseError::UriTooLong => f.write_str("request line too long"),
            ParseError::HeaderTooLarge => f.write_str("header section too large"),
            ParseError::BodyTooLarge => f.write_str("body too large"),
            ParseError::NotImplemented(why) => write!(f, "not implemented: {why}"),
            ParseError::VersionNotSupported => f.write_str("HTTP version not supported"),
            ParseError::ExpectationFailed => f.write_str("unsupported Expect value"),
        }
    }
}

impl std::error::Error for ParseError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_variant_has_its_status() {
        let table = [
            (ParseError::BadRequest("x"), 400),
            (ParseError::UriTooLong, 414),
            (ParseError::HeaderTooLarge, 431),
            (ParseError::BodyTooLarge, 413),
            (ParseError::NotImplemented("x"), 501),
            (ParseError::VersionNotSupported, 505),
            (ParseError::ExpectationFailed, 417),
        ];
        for (e, s) in table {
            assert_eq!(e.status(), s, "{e}");
        }
    }
}
