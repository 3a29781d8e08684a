//! The call's lifecycle vocabulary, spelled exactly as on the wire.

macro_rules! wire_enum {
    ($(#[$doc:meta])* $name:ident { $($variant:ident => $wire:literal),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum $name { $($variant),+ }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $wire),+ }
            }

            pub fn parse(raw: &str) -> Option<Self> {
                match raw { $($wire => Some($name::$variant),)+ _ => None }
            }
        }
    };
}

wire_enum!(
    /// `call_status`. registered → (not_connected | ongoing → ended) | error.
    CallStatus {
        Registered => "registered",
        NotConnected => "not_connected",
        Ongoing => "ongoing",
        Ended => "ended",
        Error => "error",
    }
);

wire_enum!(
    /// `direction`.
    Direction {
        Inbound => "inbound",
        Outbound => "outbound",
    }
);

wire_enum!(
    /// `call_type`.
    CallType {
        PhoneCall => "phone_call",
        WebCall => "web_call",
    }
);

wire_enum!(
    /// `disconnection_reason`: the 39 values of the current SDK.
    DisconnectionReason {
        UserHangup => "user_hangup",
        AgentHangup => "agent_hangup",
        UserRequestedDnc => "user_requested_dnc",
        UserRequestedCallback => "user_requested_callback",
        CallTransfer => "call_transfer",
        VoicemailReached => "voicemail_reached",
        IvrReached => "ivr_reached",
        Inactivity => "inactivity",
        MaxDurationReached => "max_duration_reached",
        ConcurrencyLimitReached => "concurrency_limit_reached",
        NoConcurrencyFallback => "no_concurrency_fallback",
        NoValidPayment => "no_valid_payment",
        CreditExhausted => "credit_exhausted",
        BudgetReached => "budget_reached",
        ScamDetected => "scam_detected",
        DialBusy => "dial_busy",
        DialFailed => "dial_failed",
        DialNoAnswer => "dial_no_answer",
        InvalidDestination => "invalid_destination",
        TelephonyProviderPermissionDenied => "telephony_provider_permission_denied",
        TelephonyProviderUnavailable => "telephony_provider_unavailable",
        SipRoutingError => "sip_routing_error",
        MarkedAsSpam => "marked_as_spam",
        NetworkBlocked => "network_blocked",
        UserDeclined => "user_declined",
        ErrorLlmWebsocketOpen => "error_llm_websocket_open",
        ErrorLlmWebsocketLostConnection => "error_llm_websocket_lost_connection",
        ErrorLlmWebsocketRuntime => "error_llm_websocket_runtime",
        ErrorLlmWebsocketCorruptPayload => "error_llm_websocket_corrupt_payload",
        ErrorNoAudioReceived => "error_no_audio_received",
        ErrorAsr => "error_asr",
        ErrorRetell => "error_retell",
        ErrorUnknown => "error_unknown",
        ErrorUserNotJoined => "error_user_not_joined",
        RegisteredCallTimeout => "registered_call_timeout",
        TransferBridged => "transfer_bridged",
        TransferCancelled => "transfer_cancelled",
        ManualStopped => "manual_stopped",
        CallTakeOver => "call_take_over",
    }
);

/// How a call ended: its final `call_status` and its one `disconnection_reason`, decided once
/// where the end is seen and recorded once (`CallRuntime::end`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Termination {
    pub status: CallStatus,
    pub reason: DisconnectionReason,
}

/// Whose doing an end was, for logs and metrics (livekit's termination classes).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TerminationResult {
    /// The conversation ended as conversations do (either side hung up, a transfer, a limit).
    Success,
    /// The callee or the caller's request: busy, no answer, declined, a bad destination.
    ClientError,
    /// Ours: no audio, an engine failure, a crash.
    ServerError,
    /// The trunk or a provider: unavailable, permission denied, routing.
    UpstreamError,
    Indeterminate,
}

impl Termination {
    /// A call that never connected.
    pub fn not_connected(reason: DisconnectionReason) -> Self {
        Self { status: CallStatus::NotConnected, reason }
    }

    /// A connected call's end: `error` for our own failures, `ended` otherwise.
    pub fn after_connect(reason: DisconnectionReason) -> Self {
        use DisconnectionReason as R;
        let status = match reason {
            R::ErrorNoAudioReceived
            | R::ErrorUnknown
            | R::ErrorRetell
            | R::ErrorAsr
            | R::ErrorLlmWebsocketOpen
            | R::ErrorLlmWebsocketLostConnection
            | R::ErrorLlmWebsocketRuntime
            | R::ErrorLlmWebsocketCorruptPayload => CallStatus::Error,
            _ => CallStatus::Ended,
        };
        Self { status, reason }
    }

    /// An end forced on a call whatever it had reached (a crash's leftovers, a timeout).
    pub fn error(reason: DisconnectionReason) -> Self {
        Self { status: CallStatus::Error, reason }
    }

    pub fn result(self) -> TerminationResult {
        use DisconnectionReason as R;
        match self.reason {
            R::UserHangup
            | R::AgentHangup
            | R::UserRequestedDnc
            | R::UserRequestedCallback
            | R::CallTransfer
            | R::TransferBridged
            | R::VoicemailReached
            | R::IvrReached
            | R::Inactivity
            | R::MaxDurationReached
            | R::ManualStopped
            | R::CallTakeOver => TerminationResult::Success,
            R::DialBusy | R::DialNoAnswer | R::InvalidDestination | R::UserDeclined | R::ErrorUserNotJoined | R::RegisteredCallTimeout => {
                TerminationResult::ClientError
            }
            R::DialFailed
            | R::TelephonyProviderPermissionDenied
            | R::TelephonyProviderUnavailable
            | R::SipRoutingError
            | R::MarkedAsSpam
            | R::NetworkBlocked
            | R::ErrorLlmWebsocketOpen
            | R::ErrorLlmWebsocketLostConnection
            | R::ErrorLlmWebsocketRuntime
            | R::ErrorLlmWebsocketCorruptPayload => TerminationResult::UpstreamError,
            R::ErrorNoAudioReceived | R::ErrorAsr | R::ErrorRetell | R::ErrorUnknown => TerminationResult::ServerError,
            R::ConcurrencyLimitReached
            | R::NoConcurrencyFallback
            | R::NoValidPayment
            | R::CreditExhausted
            | R::BudgetReached
            | R::ScamDetected
            | R::TransferCancelled => TerminationResult::Indeterminate,
        }
    }
}

impl TerminationResult {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Success => "success",
            Self::ClientError => "client_error",
            Self::ServerError => "server_error",
            Self::UpstreamError => "upstream_error",
            Self::Indeterminate => "indeterminate",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_variant_round_trips_through_its_wire_spelling() {
        for reason in DisconnectionReason::ALL {
            assert_eq!(DisconnectionReason::parse(reason.as_str()), Some(*reason));
        }
        assert_eq!(DisconnectionReason::ALL.len(), 39);
        assert_eq!(CallStatus::parse("not_connected"), Some(CallStatus::NotConnected));
        assert_eq!(CallStatus::parse("NotConnected"), None);
    }

    #[test]
    fn a_connected_call_ends_in_error_only_for_our_own_failures() {
        assert_eq!(Termination::after_connect(DisconnectionReason::UserHangup).status, CallStatus::Ended);
        assert_eq!(Termination::after_connect(DisconnectionReason::ErrorNoAudioReceived).status, CallStatus::Error);
        assert_eq!(Termination::not_connected(DisconnectionReason::DialBusy).result(), TerminationResult::ClientError);
        assert_eq!(Termination::error(DisconnectionReason::ErrorUnknown).result(), TerminationResult::ServerError);
    }
}
