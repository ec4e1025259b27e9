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
use std::time::Duration;
use thiserror::Error;

/// A destination pattern: `/topic/market/*`, `/app/market/*/chat`, `/topic/**`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pattern(Vec<String>);

impl Pattern {
    /// `*` is one segment; `**` the rest of the destination, and only valid as the last
    /// segment (`/topic/**/KRW-BTC` would otherwise grant everything under `/topic/`).
    pub fn parse(text: &str) -> Result<Pattern, String> {
        let segments: Vec<String> = text.split('/').map(str::to_string).collect();
        if let Some(i) = segments.iter().position(|s| s.contains("**"))
            && (i + 1 != segments.len() || segments[i] != "**")
        {
            return Err(format!(
                "pattern '{text}': '**' matches the rest of a destination and must be the whole last segment (for example /topic/**)"
            ));
        }
        Ok(Pattern(segments))
    }

    pub fn matches(&self, destination: &str) -> bool {
        let mut segs = destination.split('/');
        for (i, p) in self.0.iter().enumerate() {
            if p == "**" {
                return i + 1 == self.0.len() && segs.next().is_some();
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

/// Parses a list of patterns; `setting` names where they came from for the error.
fn patterns(list: &[String], setting: &str) -> Result<Vec<Pattern>, String> {
    list.iter()
        .filter(|s| !s.is_empty())
        .map(|s| Pattern::parse(s).map_err(|e| format!("{setting}: {e}")))
        .collect()
}

/// The longest a token is believed to stay valid, whatever its `exp` says (ten years):
/// `exp` = 2^64-1 must not overflow a deadline.
pub const MAX_TOKEN_LIFETIME: Duration = Duration::from_secs(10 * 365 * 24 * 3600);

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
    /// Token expiry, seconds since the epoch (at most [`MAX_TOKEN_LIFETIME`] from the
    /// time it was checked).
    pub expires_at: Option<u64>,
}

impl Identity {
    /// Time left before the token expires, from `now` (seconds since the epoch): never
    /// more than [`MAX_TOKEN_LIFETIME`], so `Instant::now() + d` cannot overflow. `None`
    /// when the identity has no token.
    pub fn expires_in(&self, now: u64) -> Option<Duration> {
        self.expires_at
            .map(|exp| Duration::from_secs(exp.saturating_sub(now)).min(MAX_TOKEN_LIFETIME))
    }

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
    #[error("the token is not yet valid (nbf is in the future); check the clock of its issuer")]
    NotYetValid,
    #[error("the token is malformed: {0}")]
    Malformed(&'static str),
    #[error("the token was rejected: {0}")]
    Invalid(String),
}

impl AuthError {
    pub fn label(&self) -> &'static str {
        match self {
            AuthError::Missing => "auth_missing",
            AuthError::Expired => "auth_expired",
            AuthError::NotYetValid => "auth_not_yet_valid",
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
            let mut required = vec!["exp"];
            if let Some(iss) = &settings.issuer {
                v.set_issuer(&[iss]);
                required.push("iss");
            }
            match &settings.audience {
                Some(aud) => {
                    v.set_audience(&[aud]);
                    required.push("aud");
                }
                None => v.validate_aud = false,
            }
            v.set_required_spec_claims(&required);
            v.validate_nbf = true;
            v.leeway = 5;
            (k, v)
        });
        Ok(Auth {
            key,
            anonymous_subscribe: patterns(&settings.anonymous_subscribe, "--anonymous-subscribe")?,
            default_subscribe: patterns(&settings.default_subscribe, "--default-subscribe")?,
            default_send: patterns(&settings.default_send, "--default-send")?,
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
                Some(l) if !l.is_empty() && l.len() <= 64 && printable(l) => l.to_string(),
                _ => format!("guest-{session_id}"),
            };
            return Ok(Identity {
                user,
                authenticated: false,
                subscribe: vec![Pattern(vec!["**".into()])],
                send: vec![Pattern(vec!["**".into()])],
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
        // The texts are ours: jsonwebtoken's error strings describe its internals, not what
        // the client should do.
        let data = decode::<Claims>(token, key, validation).map_err(|e| match e.kind() {
            ErrorKind::ExpiredSignature => AuthError::Expired,
            ErrorKind::ImmatureSignature => AuthError::NotYetValid,
            ErrorKind::InvalidSignature => AuthError::BadSignature,
            ErrorKind::InvalidIssuer => AuthError::Invalid("its issuer (iss) is not accepted here".into()),
            ErrorKind::InvalidAudience => {
                AuthError::Invalid("its audience (aud) is not this gateway".into())
            }
            ErrorKind::MissingRequiredClaim(claim) => AuthError::Invalid(format!(
                "it lacks the required claim '{}'",
                match claim.as_str() {
                    "exp" | "iss" | "aud" | "nbf" | "sub" => claim.as_str(),
                    _ => "?",
                }
            )),
            ErrorKind::InvalidAlgorithm | ErrorKind::MissingAlgorithm => {
                AuthError::Invalid("it is signed with an algorithm this gateway does not accept".into())
            }
            ErrorKind::InvalidToken | ErrorKind::Base64(_) | ErrorKind::Utf8(_) => {
                AuthError::Malformed("not three base64url parts separated by dots")
            }
            ErrorKind::Json(_) | ErrorKind::InvalidClaimFormat(_) => AuthError::Malformed(
                "its header or claims are not the expected JSON (sub: string, exp: number of seconds)",
            ),
            _ => AuthError::Invalid("it cannot be verified by this gateway".into()),
        })?;
        let claims = data.claims;
        if claims.sub.is_empty() || claims.sub.len() > 128 || !printable(&claims.sub) {
            return Err(AuthError::Invalid(
                "the sub claim must name the user in 1 to 128 printable characters".into(),
            ));
        }
        let pattern_claim = |list: Option<Vec<String>>, claim: &str, default: &[Pattern]| match list
        {
            Some(p) => patterns(&p, claim).map_err(AuthError::Invalid),
            None => Ok(default.to_vec()),
        };
        let now = (crate::clock::now_ms() / 1000).max(0) as u64;
        Ok(Identity {
            user: claims.sub,
            authenticated: true,
            subscribe: pattern_claim(
                claims.subscribe,
                "the subscribe claim",
                &self.default_subscribe,
            )?,
            send: pattern_claim(claims.send, "the send claim", &self.default_send)?,
            expires_at: Some(
                claims
                    .exp
                    .min(now.saturating_add(MAX_TOKEN_LIFETIME.as_secs())),
            ),
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

/// No control characters: a user name goes into STOMP headers and log lines, where a
/// newline would start a forged header or line.
fn printable(text: &str) -> bool {
    !text.chars().any(char::is_control)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pattern(text: &str) -> Pattern {
        Pattern::parse(text).unwrap()
    }

    #[test]
    fn patterns_match_segments() {
        let p = pattern("/topic/market/*");
        assert!(p.matches("/topic/market/KRW-BTC"));
        assert!(p.matches("/topic/market/*"));
        assert!(!p.matches("/topic/market/a/b"));
        assert!(!p.matches("/topic/market/"));
        assert!(!p.matches("/topic/other/a"));
        let chat = pattern("/app/market/*/chat");
        assert!(chat.matches("/app/market/KRW-ETH/chat"));
        assert!(!chat.matches("/app/market/KRW-ETH/trade"));
        let all = pattern("/topic/**");
        assert!(all.matches("/topic/market/x"));
        assert!(!all.matches("/app/market/x/chat"));
        assert!(pattern("**").matches("/anything/at/all"));
        assert!(pattern("/topic/market/KRW-BTC").matches("/topic/market/KRW-BTC"));
    }

    #[test]
    fn double_star_only_at_the_end() {
        for bad in ["/topic/**/KRW-BTC", "/topic/a**", "**/x", "/topic/**x"] {
            let e = Pattern::parse(bad).unwrap_err();
            assert!(e.contains("must be the whole last segment"), "{e}");
        }
        let settings = AuthSettings {
            default_subscribe: vec!["/topic/**/KRW-BTC".into()],
            ..Default::default()
        };
        let e = Auth::new(&settings).err().unwrap();
        assert!(
            e.starts_with("--default-subscribe: pattern '/topic/**/KRW-BTC'"),
            "{e}"
        );
        // In a token: the token is refused.
        let auth = jwt_auth(None, None);
        let t = sign(json!({"sub": "a", "exp": now() + 60, "subscribe": ["/topic/**/KRW-BTC"]}));
        assert!(matches!(
            auth.authenticate(Some(&t), None, 1),
            Err(AuthError::Invalid(m)) if m.contains("subscribe claim")
        ));
    }

    const SECRET: &str = "a-unit-test-secret-123";

    fn now() -> u64 {
        (crate::clock::now_ms() / 1000) as u64
    }

    fn sign(claims: serde_json::Value) -> String {
        jsonwebtoken::encode(
            &jsonwebtoken::Header::new(Algorithm::HS256),
            &claims,
            &jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes()),
        )
        .unwrap()
    }

    fn jwt_auth(issuer: Option<&str>, audience: Option<&str>) -> Auth {
        Auth::new(&AuthSettings {
            secret: Some(SECRET.into()),
            issuer: issuer.map(str::to_string),
            audience: audience.map(str::to_string),
            default_subscribe: vec!["/topic/market/*".into()],
            ..Default::default()
        })
        .unwrap()
    }

    use serde_json::json;

    #[test]
    fn issuer_and_audience_are_required_claims() {
        let auth = jwt_auth(Some("https://idp.example"), Some("stompgate"));
        let exp = now() + 600;
        let good =
            sign(json!({"sub": "a", "exp": exp, "iss": "https://idp.example", "aud": "stompgate"}));
        assert_eq!(auth.authenticate(Some(&good), None, 1).unwrap().user, "a");
        for (claims, text) in [
            (
                json!({"sub": "a", "exp": exp, "aud": "stompgate"}),
                "required claim 'iss'",
            ),
            (
                json!({"sub": "a", "exp": exp, "iss": "https://idp.example"}),
                "required claim 'aud'",
            ),
            (
                json!({"sub": "a", "exp": exp, "iss": "https://evil", "aud": "stompgate"}),
                "issuer",
            ),
            (
                json!({"sub": "a", "exp": exp, "iss": "https://idp.example", "aud": "other"}),
                "audience",
            ),
        ] {
            let e = auth
                .authenticate(Some(&sign(claims.clone())), None, 1)
                .unwrap_err();
            assert!(e.to_string().contains(text), "{claims}: {e}");
        }
    }

    #[test]
    fn not_before_is_checked() {
        let auth = jwt_auth(None, None);
        let later = sign(
            json!({"sub": "a", "exp": now() + 3600 * 24 * 400, "nbf": now() + 3600 * 24 * 365}),
        );
        assert_eq!(
            auth.authenticate(Some(&later), None, 1).unwrap_err(),
            AuthError::NotYetValid
        );
        let now_ok = sign(json!({"sub": "a", "exp": now() + 60, "nbf": now() - 1}));
        assert!(auth.authenticate(Some(&now_ok), None, 1).is_ok());
    }

    #[test]
    fn huge_expiry_is_clamped() {
        let auth = jwt_auth(None, None);
        let t = sign(json!({"sub": "a", "exp": u64::MAX}));
        let id = auth.authenticate(Some(&t), None, 1).unwrap();
        let left = id.expires_in(now()).unwrap();
        assert!(left <= MAX_TOKEN_LIFETIME && left > MAX_TOKEN_LIFETIME / 2);
        // What the session does with it must not overflow.
        let _ = std::time::Instant::now() + left;
        let raw = Identity {
            expires_at: Some(u64::MAX),
            ..id
        };
        assert_eq!(raw.expires_in(0), Some(MAX_TOKEN_LIFETIME));
        // Floats and numbers past u64 are not an expiry.
        let t = sign(json!({"sub": "a", "exp": 1e30}));
        assert!(matches!(
            auth.authenticate(Some(&t), None, 1),
            Err(AuthError::Malformed(_))
        ));
    }

    #[test]
    fn subjects_with_control_characters_are_refused() {
        let auth = jwt_auth(None, None);
        for sub in [
            "alice\nmessage:forged",
            "bob\r",
            "eve\u{1b}[2J",
            "x\u{0}y",
            "",
        ] {
            let t = sign(json!({"sub": sub, "exp": now() + 60}));
            let e = auth.authenticate(Some(&t), None, 1).unwrap_err();
            assert!(e.to_string().contains("printable"), "{sub:?}: {e}");
        }
        let open = Auth::new(&AuthSettings::default()).unwrap();
        assert_eq!(
            open.authenticate(None, Some("a\u{1b}b"), 7).unwrap().user,
            "guest-7"
        );
    }

    #[test]
    fn error_texts_are_ours() {
        let auth = jwt_auth(None, None);
        for token in ["garbage", "a.b.c", "eyJhbGciOiJIUzI1NiJ9.e30.x"] {
            let e = auth.authenticate(Some(token), None, 1).unwrap_err();
            let text = e.to_string();
            for internal in ["Base64", "Json", "InvalidToken", "Error(", "line", "column"] {
                assert!(!text.contains(internal), "{token}: {text}");
            }
        }
        let other = jsonwebtoken::encode(
            &jsonwebtoken::Header::new(Algorithm::HS256),
            &json!({"sub": "a", "exp": now() + 60}),
            &jsonwebtoken::EncodingKey::from_secret(b"another-secret-of-length"),
        )
        .unwrap();
        assert_eq!(
            auth.authenticate(Some(&other), None, 1).unwrap_err(),
            AuthError::BadSignature
        );
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
