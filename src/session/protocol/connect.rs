//! CONNECT and the session's identity: the heart-beat negotiation, the token a client
//! connects with and refreshes in-band, and what a token allows.

use super::{Effect, MAX_TOKEN_LIFETIME, Protocol, TOKEN_DESTINATION};
use crate::clock::now_ms;
use crate::session::Close;
use crate::session::context::SessionContext;
use crate::stomp::{Command, Frame, Version};
use std::time::Duration;

impl Protocol {
    /// The token a CONNECT authenticates with: `passcode`, an `Authorization: Bearer`
    /// header, or the one the WebSocket upgrade carried.
    pub(super) fn connect_token<'f>(&'f self, frame: &'f Frame) -> Option<&'f str> {
        frame
            .header("passcode")
            .filter(|p| !p.is_empty())
            .or_else(|| {
                frame
                    .header("Authorization")
                    .or_else(|| frame.header("authorization"))
                    .and_then(|h| h.strip_prefix("Bearer "))
            })
            .or(self.upgrade_token.as_deref())
    }

    /// Seconds left on a token expiring at `exp` (seconds since the epoch), capped.
    pub(super) fn lifetime(exp: u64) -> Duration {
        let now = (now_ms() / 1000).max(0) as u64;
        Duration::from_secs(exp.saturating_sub(now)).min(MAX_TOKEN_LIFETIME)
    }

    pub(super) fn on_connect(
        &mut self,
        frame: &Frame,
        cx: &SessionContext,
        out: &mut Vec<Effect>,
    ) -> Result<(), Close> {
        let accepted: Vec<Version> = match frame.header("accept-version") {
            None => vec![Version::V1_0],
            Some(list) => list.split(',').filter_map(Version::parse).collect(),
        };
        let Some(version) = accepted.into_iter().max() else {
            let mut close = self.protocol_error(
                cx,
                "unsupported_version",
                "unsupported protocol version",
                "Supported protocol versions are 1.0, 1.1 and 1.2.",
                Some(frame),
            );
            if let Some(e) = close.error.as_mut() {
                e.headers.push(("version".into(), "1.0,1.1,1.2".into()));
            }
            return Err(close);
        };
        let (cx_ms, cy_ms) = parse_heartbeat(frame.header("heart-beat"));
        let server = cx.settings.heartbeat_ms;
        if server > 0 && cy_ms > 0 && version != Version::V1_0 {
            self.heartbeat_out = Some(Duration::from_millis(server.max(cy_ms)));
        }
        if server > 0 && cx_ms > 0 && version != Version::V1_0 {
            self.heartbeat_in = Some(Duration::from_millis(server.max(cx_ms)));
        }
        let identity = cx
            .auth
            .authenticate(self.connect_token(frame), frame.header("login"), self.id)
            .map_err(|e| {
                tracing::info!(session = self.id, peer = %self.peer, reason = e.label(), "authentication failed");
                self.protocol_error(cx, e.label(), "authentication failed", &e.to_string(), Some(frame))
            })?;
        self.expires_in = identity.expires_at.map(Protocol::lifetime);
        self.user = identity.user.clone();
        self.owner = if identity.authenticated {
            format!("sub:{}", identity.user)
        } else {
            format!("conn:{:032x}", rand::random::<u128>())
        };
        self.identity = Some(identity);
        self.version = Some(version);
        cx.metrics
            .sessions
            .with_label_values(&[version.as_str()])
            .inc();
        out.push(Effect::Rearm);
        out.push(Effect::Reply(
            Frame::new(Command::Connected)
                .with("version", version.as_str())
                .with("session", self.id.to_string())
                .with("server", concat!("stompgate/", env!("CARGO_PKG_VERSION")))
                .with("heart-beat", format!("{server},{server}"))
                .with("user-name", self.user.clone()),
        ));
        tracing::debug!(session = self.id, %version, user = %self.user, "session connected");
        Ok(())
    }

    /// A SEND to [`TOKEN_DESTINATION`]: re-authenticates with a new token of the same subject
    /// and moves the expiry; a bad token closes the session as CONNECT would.
    pub(super) fn on_token_refresh(
        &mut self,
        frame: &Frame,
        cx: &SessionContext,
        out: &mut Vec<Effect>,
    ) -> Result<(), Close> {
        let body = std::str::from_utf8(&frame.body).unwrap_or_default().trim();
        let token = frame
            .header("passcode")
            .filter(|p| !p.is_empty())
            .or(Some(body).filter(|b| !b.is_empty()));
        let Some(token) = token else {
            return Err(self.protocol_error(
                cx,
                "bad_token_refresh",
                "token refresh needs a token",
                &format!("SEND to {TOKEN_DESTINATION} carries the new token as its body or in a 'passcode' header."),
                Some(frame),
            ));
        };
        let identity = cx
            .auth
            .authenticate(Some(token), None, self.id)
            .map_err(|e| {
                self.protocol_error(
                    cx,
                    e.label(),
                    "authentication failed",
                    &e.to_string(),
                    Some(frame),
                )
            })?;
        if !identity.authenticated || identity.user != self.user {
            return Err(self.protocol_error(
                cx,
                "bad_token_refresh",
                "token refresh refused",
                "The new token must be a valid token for the same user as the session's.",
                Some(frame),
            ));
        }
        self.expires_in = identity.expires_at.map(Protocol::lifetime);
        self.identity = Some(identity);
        out.push(Effect::Rearm);
        Protocol::receipt(frame, out);
        Ok(())
    }

    /// A SEND route open to authenticated clients only: the session must hold a token.
    pub(super) fn require_token(
        &self,
        cx: &SessionContext,
        destination: &str,
        frame: &Frame,
    ) -> Result<(), Close> {
        if self.identity.as_ref().is_some_and(|i| i.authenticated) {
            return Ok(());
        }
        Err(self.protocol_error(
            cx,
            "forbidden",
            "forbidden",
            &format!(
                "{} may not send to '{destination}': it takes SENDs from authenticated clients only. Connect with a token to send.",
                self.user
            ),
            Some(frame),
        ))
    }
}

/// The client's heart-beat header `cx,cy` (0,0 when absent or malformed).
pub(super) fn parse_heartbeat(value: Option<&str>) -> (u64, u64) {
    value
        .and_then(|v| {
            let (a, b) = v.split_once(',')?;
            Some((a.trim().parse().ok()?, b.trim().parse().ok()?))
        })
        .unwrap_or((0, 0))
}
