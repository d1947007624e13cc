//! Bearer-token authentication, shared by HTTP (`Authorization: Bearer …`) and gRPC
//! (the `authorization` metadata, same value).
//!
//! Tokens are kept only as SHA-256 digests, and a presented token is hashed and compared
//! with every digest in constant time, so neither the comparison's time nor an early
//! exit tells a client how much of a token it got right, or how long the tokens are.

use std::fmt;

use sha2::{Digest, Sha256};
use subtle::{Choice, ConstantTimeEq};

use crate::SetupError;

/// The health routes `--auth-allow-health` leaves open, over HTTP and gRPC.
pub const OPEN_HTTP_PATHS: [&str; 2] = ["/v2/health/live", "/v2/health/ready"];
pub const OPEN_GRPC_PATHS: [&str; 3] = [
    "/inference.GRPCInferenceService/ServerLive",
    "/inference.GRPCInferenceService/ServerReady",
    "/grpc.health.v1.Health/Check",
];

/// The accepted tokens. Build with [`Auth::new`].
#[derive(Clone)]
pub struct Auth {
    digests: Vec<[u8; 32]>,
    allow_health: bool,
}

impl fmt::Debug for Auth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Auth")
            .field("tokens", &self.digests.len())
            .field("allow_health", &self.allow_health)
            .finish()
    }
}

/// Why a request was refused; the text goes to the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    Missing,
    NotBearer,
    WrongToken,
}

impl Refusal {
    pub fn message(self) -> &'static str {
        match self {
            Refusal::Missing => "authentication required: send `authorization: Bearer <token>`",
            Refusal::NotBearer => "the authorization header must be `Bearer <token>`",
            Refusal::WrongToken => "the bearer token is not valid",
        }
    }
}

impl Auth {
    /// Accepts any of `tokens`; `source` names where they came from, for errors.
    pub fn new(tokens: Vec<String>, allow_health: bool, source: &str) -> Result<Self, SetupError> {
        if tokens.is_empty() {
            return Err(SetupError(format!("{source} holds no token")));
        }
        if let Some(line) = tokens
            .iter()
            .position(|t| !t.bytes().all(|b| b.is_ascii_graphic()))
        {
            return Err(SetupError(format!(
                "{source}: token {} has a space or a non-ASCII character; tokens are sent in a \
                 header, so use printable ASCII",
                line + 1
            )));
        }
        Ok(Auth {
            digests: tokens.iter().map(|t| digest(t.as_bytes())).collect(),
            allow_health,
        })
    }

    /// Tokens from text: one a line, blank lines and `#` comment lines skipped.
    pub fn parse_tokens(text: &str) -> Vec<String> {
        text.lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .map(str::to_string)
            .collect()
    }

    /// Whether health checks may go without a token.
    pub fn allows_health(&self) -> bool {
        self.allow_health
    }

    /// Checks an `authorization` value (`None` when the request has none).
    pub fn check(&self, authorization: Option<&[u8]>) -> Result<(), Refusal> {
        let value = authorization.ok_or(Refusal::Missing)?;
        let token = bearer_token(value).ok_or(Refusal::NotBearer)?;
        let presented = digest(token);
        let matched = self
            .digests
            .iter()
            .fold(Choice::from(0), |any, d| any | d.ct_eq(&presented));
        if bool::from(matched) {
            Ok(())
        } else {
            Err(Refusal::WrongToken)
        }
    }
}

fn digest(token: &[u8]) -> [u8; 32] {
    Sha256::digest(token).into()
}

/// The token of `Bearer <token>` (the scheme is case-insensitive).
fn bearer_token(value: &[u8]) -> Option<&[u8]> {
    let value = value.trim_ascii();
    let (scheme, rest) = value.split_at_checked(6)?;
    if !scheme.eq_ignore_ascii_case(b"bearer") || !rest.first()?.is_ascii_whitespace() {
        return None;
    }
    let token = rest.trim_ascii();
    (!token.is_empty()).then_some(token)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn auth() -> Auth {
        let tokens = Auth::parse_tokens("# tokens\n  alpha-1 \n\nbeta.2\n");
        assert_eq!(tokens, ["alpha-1", "beta.2"]);
        Auth::new(tokens, false, "tokens.txt").unwrap()
    }

    #[test]
    fn accepts_any_listed_token() {
        let auth = auth();
        assert_eq!(auth.check(Some(b"Bearer alpha-1")), Ok(()));
        assert_eq!(auth.check(Some(b"bearer   beta.2 ")), Ok(()));
        assert_eq!(auth.check(Some(b"Bearer alpha-")), Err(Refusal::WrongToken));
        assert_eq!(
            auth.check(Some(b"Bearer alpha-12")),
            Err(Refusal::WrongToken)
        );
        assert_eq!(auth.check(Some(b"Basic YWxwaGE=")), Err(Refusal::NotBearer));
        assert_eq!(auth.check(Some(b"Bearer")), Err(Refusal::NotBearer));
        assert_eq!(auth.check(Some(b"Beareralpha-1")), Err(Refusal::NotBearer));
        assert_eq!(auth.check(None), Err(Refusal::Missing));
        assert!(!format!("{auth:?}").contains("alpha"));
    }

    #[test]
    fn refuses_unusable_token_lists() {
        let err = Auth::new(vec![], false, "$API_TOKENS").unwrap_err();
        assert_eq!(err.to_string(), "$API_TOKENS holds no token");
        let err = Auth::new(vec!["ok".into(), "two words".into()], false, "f").unwrap_err();
        assert!(err.to_string().contains("token 2 has a space"), "{err}");
    }
}
