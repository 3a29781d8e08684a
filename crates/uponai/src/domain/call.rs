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
}
