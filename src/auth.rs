//! Authentication on CONNECT (JWT) and destination permissions.
//!
//! Without `--jwt-secret` or `--jwt-public-key` the gateway is open: anyone may subscribe
//! to market data and send chat, and the chat identity is the CONNECT `login` (or
//! `guest-<n>`). With a key configured, a token is taken from the CONNECT `passcode` or
//! `Authorization: Bearer` header, or from the WebSocket upgrade (`Authorization: Bearer`
//! header or `access_token` query parameter); its `sub` is the identity and its
//! `subscribe` / `send` claims (destination patterns) are the permissions. Anonymous
//! clients may then at most subscribe, to the `--anonymous-subscribe` patterns.
//!
//! Patterns match destinations segment by segment: `*` is one segment, `**` the rest.

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, Validation, decode};
use serde::Deserialize;
use thiserror::Error;

/// A destination pattern: `/topic/market/*`, `/app/market/*/chat`, `/topic/**`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pattern(Vec<String>);

impl Pattern {
    pub fn parse(text: &str) -> Pattern {
        Pattern(text.split('/').map(str::to_string).collect())
    }

    pub fn matches(&self, destination: &str) -> bool {
        let mut segs = destination.split('/');
        for (i, p) in self.0.iter().enumerate() {
            if p == "**" {
                return i + 1 == self.0.len() || segs.next().is_some();
            }
            match segs.next() {
                Some(s) if p == "*" && !s.is_empty() => {}
                Some(s) if s == p => {}
                _ => return false,
            }
        }
        segs.next().is_none()
    }
}

fn patterns(list: &[String]) -> Vec<Pattern> {
    list.iter()
        .filter(|s| !s.is_empty())
        .map(|s| Pattern::parse(s))
        .collect()
}

fn any_match(patterns: &[Pattern], destination: &str) -> bool {
    patterns.iter().any(|p| p.matches(destination))
}

/// Who a session is and what it may do.
#[derive(Debug, Clone)]
pub struct Identity {
    pub user: String,
    pub authenticated: bool,
    pub subscribe: Vec<Pattern>,
    pub send: Vec<Pattern>,
    /// Token expiry, seconds since the epoch.
    pub expires_at: Option<u64>,
}

impl Identity {
    pub fn may_subscribe(&self, destination: &str) -> bool {
        any_match(&self.subscribe, destination)
    }

    pub fn may_send(&self, destination: &str) -> bool {
        any_match(&self.send, destination)
    }
}

/// Why CONNECT was refused; the text goes into the ERROR body.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum AuthError {
    #[error(
        "a token is required: pass a JWT as the CONNECT passcode, an Authorization: Bearer header, or ?access_token= on the WebSocket URL"
    )]
    Missing,
    #[error("the token has expired; get a new one and reconnect")]
    Expired,
    #[error("the token's signature is not valid for this gateway")]
    BadSignature,
    #[error("the token is malformed: {0}")]
    Malformed(String),
    #[error("the token was rejected: {0}")]
    Invalid(String),
}

impl AuthError {
    pub fn label(&self) -> &'static str {
        match self {
            AuthError::Missing => "auth_missing",
            AuthError::Expired => "auth_expired",
            AuthError::BadSignature => "auth_bad_signature",
            AuthError::Malformed(_) => "auth_malformed",
            AuthError::Invalid(_) => "auth_invalid",
        }
    }
}

#[derive(Debug, Deserialize)]
struct Claims {
    sub: String,
    exp: u64,
    #[serde(default)]
    subscribe: Option<Vec<String>>,
    #[serde(default)]
    send: Option<Vec<String>>,
}

/// Settings of authentication, from the configuration.
#[derive(Debug, Clone, Default)]
pub struct AuthSettings {
    /// HS256 shared secret.
    pub secret: Option<String>,
    /// PEM public key (RSA or EC) for RS256 / ES256.
    pub public_key_pem: Option<Vec<u8>>,
    pub issuer: Option<String>,
    pub audience: Option<String>,
    /// Subscribe patterns of clients without a token (auth configured); empty: none.
    pub anonymous_subscribe: Vec<String>,
    /// Permissions of a token without `subscribe` / `send` claims.
    pub default_subscribe: Vec<String>,
    pub default_send: Vec<String>,
}

pub struct Auth {
    key: Option<(DecodingKey, Validation)>,
    anonymous_subscribe: Vec<Pattern>,
    default_subscribe: Vec<Pattern>,
    default_send: Vec<Pattern>,
}

impl Auth {
    /// Builds the authenticator; an unusable key is a configuration error naming the setting.
    pub fn new(settings: &AuthSettings) -> Result<Auth, String> {
        let key = match (&settings.secret, &settings.public_key_pem) {
            (Some(_), Some(_)) => {
                return Err(
                    "--jwt-secret and --jwt-public-key are exclusive: configure one".into(),
                );
            }
            (Some(secret), None) => {
                if secret.len() < 16 {
                    return Err("--jwt-secret must be at least 16 characters".into());
                }
                Some((
                    DecodingKey::from_secret(secret.as_bytes()),
                    Validation::new(Algorithm::HS256),
                ))
            }
            (None, Some(pem)) => {
                let text = String::from_utf8_lossy(pem);
                let (key, alg) = if text.contains("BEGIN RSA PUBLIC KEY")
                    || DecodingKey::from_rsa_pem(pem).is_ok()
                {
                    (DecodingKey::from_rsa_pem(pem), Algorithm::RS256)
                } else {
                    (DecodingKey::from_ec_pem(pem), Algorithm::ES256)
                };
                let key = key.map_err(|e| {
                    format!("--jwt-public-key: not an RSA or EC public key in PEM form ({e})")
                })?;
                Some((key, Validation::new(alg)))
            }
            (None, None) => None,
        };
        let key = key.map(|(k, mut v)| {
            if let Some(iss) = &settings.issuer {
                v.set_issuer(&[iss]);
            }
            match &settings.audience {
                Some(aud) => v.set_audience(&[aud]),
                None => v.validate_aud = false,
            }
            v.leeway = 5;
            (k, v)
        });
        Ok(Auth {
            key,
            anonymous_subscribe: patterns(&settings.anonymous_subscribe),
            default_subscribe: patterns(&settings.default_subscribe),
            default_send: patterns(&settings.default_send),
        })
    }

    /// Decides who the client is. `token` is the JWT if the client gave one; `login` the
    /// CONNECT `login` header (used as the name only when auth is off).
    pub fn authenticate(
        &self,
        token: Option<&str>,
        login: Option<&str>,
        session_id: u64,
    ) -> Result<Identity, AuthError> {
        let Some((key, validation)) = &self.key else {
            let user = match login.map(str::trim) {
                Some(l) if !l.is_empty() && l.len() <= 64 => l.to_string(),
                _ => format!("guest-{session_id}"),
            };
            return Ok(Identity {
                user,
                authenticated: false,
                subscribe: vec![Pattern::parse("**")],
                send: vec![Pattern::parse("**")],
                expires_at: None,
            });
        };
        let token = token.map(str::trim).filter(|t| !t.is_empty());
        let Some(token) = token else {
            if self.anonymous_subscribe.is_empty() {
                return Err(AuthError::Missing);
            }
            return Ok(Identity {
                user: format!("anonymous-{session_id}"),
                authenticated: false,
                subscribe: self.anonymous_subscribe.clone(),
                send: Vec::new(),
                expires_at: None,
            });
        };
        let data = decode::<Claims>(token, key, validation).map_err(|e| match e.kind() {
            ErrorKind::ExpiredSignature => AuthError::Expired,
            ErrorKind::InvalidSignature => AuthError::BadSignature,
            ErrorKind::InvalidToken
            | ErrorKind::Base64(_)
            | ErrorKind::Json(_)
            | ErrorKind::Utf8(_) => AuthError::Malformed(e.to_string()),
            _ => AuthError::Invalid(e.to_string()),
        })?;
        let claims = data.claims;
        if claims.sub.is_empty() || claims.sub.len() > 128 {
            return Err(AuthError::Invalid(
                "the sub claim must name the user".into(),
            ));
        }
        Ok(Identity {
            user: claims.sub,
            authenticated: true,
            subscribe: claims
                .subscribe
                .map(|p| patterns(&p))
                .unwrap_or_else(|| self.default_subscribe.clone()),
            send: claims
                .send
                .map(|p| patterns(&p))
                .unwrap_or_else(|| self.default_send.clone()),
            expires_at: Some(claims.exp),
        })
    }
}

/// The claim that lets a token change the market registry.
#[derive(Debug, Deserialize)]
struct AdminClaims {
    #[serde(default)]
    admin: bool,
}

impl Auth {
    /// Whether `token` is a valid JWT carrying `"admin": true`; None when no JWT key is
    /// configured.
    pub fn admin_claim(&self, token: &str) -> Option<Result<bool, AuthError>> {
        let (key, validation) = self.key.as_ref()?;
        Some(
            decode::<AdminClaims>(token.trim(), key, validation)
                .map(|d| d.claims.admin)
                .map_err(|e| match e.kind() {
                    ErrorKind::ExpiredSignature => AuthError::Expired,
                    ErrorKind::InvalidSignature => AuthError::BadSignature,
                    _ => AuthError::Invalid(e.to_string()),
                }),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_match_segments() {
        let p = Pattern::parse("/topic/market/*");
        assert!(p.matches("/topic/market/KRW-BTC"));
        assert!(p.matches("/topic/market/*"));
        assert!(!p.matches("/topic/market/a/b"));
        assert!(!p.matches("/topic/market/"));
        assert!(!p.matches("/topic/other/a"));
        let chat = Pattern::parse("/app/market/*/chat");
        assert!(chat.matches("/app/market/KRW-ETH/chat"));
        assert!(!chat.matches("/app/market/KRW-ETH/trade"));
        let all = Pattern::parse("/topic/**");
        assert!(all.matches("/topic/market/x"));
        assert!(!all.matches("/app/market/x/chat"));
        assert!(Pattern::parse("**").matches("/anything/at/all"));
        assert!(Pattern::parse("/topic/market/KRW-BTC").matches("/topic/market/KRW-BTC"));
    }

    #[test]
    fn open_gateway_uses_login() {
        let auth = Auth::new(&AuthSettings::default()).unwrap();
        let id = auth.authenticate(None, Some("alice"), 3).unwrap();
        assert_eq!(id.user, "alice");
        assert!(id.may_send("/app/market/X/chat"));
        assert_eq!(auth.authenticate(None, None, 3).unwrap().user, "guest-3");
    }

    #[test]
    fn configuration_errors_name_the_setting() {
        let short = AuthSettings {
            secret: Some("short".into()),
            ..Default::default()
        };
        assert!(Auth::new(&short).err().unwrap().contains("--jwt-secret"));
        let bad_pem = AuthSettings {
            public_key_pem: Some(b"not a key".to_vec()),
            ..Default::default()
        };
        assert!(
            Auth::new(&bad_pem)
                .err()
                .unwrap()
                .contains("--jwt-public-key")
        );
    }
}
