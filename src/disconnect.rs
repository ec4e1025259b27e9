//! Why a connection ended: a typed, documented list. Each reason has a metrics label and,
//! where the client should hear it, the `message` of the ERROR frame sent before closing.

use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Disconnect {
    /// The client sent DISCONNECT.
    ClientRequest,
    /// The transport closed or failed (client went away).
    TransportClosed,
    /// The outbox passed its byte bound: the client does not read fast enough.
    SlowConsumer,
    /// One write to the client did not complete within the write timeout.
    WriteTimeout,
    /// A client/client-individual subscription holds too many unacknowledged messages.
    TooManyPendingAcks,
    /// No bytes from the client within the negotiated heart-beat grace period.
    HeartbeatTimeout,
    /// No CONNECT within the connect timeout.
    ConnectTimeout,
    /// A frame broke the protocol or a limit; an ERROR with details was sent.
    ProtocolError,
    /// The connection limit was reached.
    ServerFull,
    /// The server is shutting down.
    ShuttingDown,
    /// The session's token expired.
    TokenExpired,
    /// The client address has too many connections.
    TooManyFromAddress,
}

impl Disconnect {
    /// Label for metrics and logs.
    pub fn label(self) -> &'static str {
        match self {
            Disconnect::ClientRequest => "client_disconnect",
            Disconnect::TransportClosed => "transport_closed",
            Disconnect::SlowConsumer => "slow_consumer",
            Disconnect::WriteTimeout => "write_timeout",
            Disconnect::TooManyPendingAcks => "too_many_pending_acks",
            Disconnect::HeartbeatTimeout => "heartbeat_timeout",
            Disconnect::ConnectTimeout => "connect_timeout",
            Disconnect::ProtocolError => "protocol_error",
            Disconnect::ServerFull => "server_full",
            Disconnect::ShuttingDown => "shutting_down",
            Disconnect::TokenExpired => "token_expired",
            Disconnect::TooManyFromAddress => "too_many_from_address",
        }
    }

    /// `message` header and body of the ERROR frame for reasons the server initiates.
    pub fn error_text(self) -> Option<(&'static str, &'static str)> {
        match self {
            Disconnect::SlowConsumer => Some((
                "slow consumer",
                "Your connection fell too far behind the stream and its outbound queue overflowed. Read faster, subscribe to fewer destinations, or reconnect.",
            )),
            Disconnect::WriteTimeout => Some((
                "slow consumer",
                "A write to your connection did not complete in time. Reconnect when the network allows.",
            )),
            Disconnect::TooManyPendingAcks => Some((
                "too many unacknowledged messages",
                "ACK the messages of client/client-individual subscriptions, or subscribe with ack:auto.",
            )),
            Disconnect::HeartbeatTimeout => Some((
                "heart-beat timeout",
                "Nothing was received from you within the negotiated heart-beat period.",
            )),
            Disconnect::ConnectTimeout => Some((
                "connect timeout",
                "Send a CONNECT frame right after opening the connection.",
            )),
            Disconnect::ServerFull => Some((
                "server full",
                "The gateway has reached its connection limit. Try again later or another replica.",
            )),
            Disconnect::ShuttingDown => Some((
                "server shutting down",
                "This gateway is shutting down. Reconnect; the load balancer will send you to another replica.",
            )),
            Disconnect::TokenExpired => Some((
                "token expired",
                "Your token has expired. Get a new one and reconnect.",
            )),
            Disconnect::TooManyFromAddress => Some((
                "too many connections from your address",
                "Close some of your connections to this gateway, or ask its operator to raise --max-connections-per-ip.",
            )),
            Disconnect::ClientRequest | Disconnect::TransportClosed | Disconnect::ProtocolError => {
                None
            }
        }
    }
}

impl fmt::Display for Disconnect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.label())
    }
}
