//! How a dial attempt's SIP outcome becomes the call's one `disconnection_reason`, decided
//! where the failure is seen.

use crate::domain::{CallStatus, DisconnectionReason, Termination};

/// What became of an INVITE that did not lead to a conversation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DialFailure {
    /// A final non-2xx response.
    Rejected { status: u16, after_our_cancel: bool },
    /// We gave up ringing (ring_duration_ms) and the trunk did not answer our CANCEL.
    RingTimeout,
    /// No response at all (Timer B) or the transport failed.
    Unreachable,
    /// The number cannot be dialed (no trunk, unresolvable host, unsupported transport).
    NoRoute,
}

impl DialFailure {
    /// A call that never connected is `not_connected`, with the reason its failure gives.
    pub fn termination(self) -> Termination {
        Termination::not_connected(self.reason())
    }

    fn reason(self) -> DisconnectionReason {
        use DisconnectionReason as R;
        match self {
            Self::RingTimeout => R::DialNoAnswer,
            Self::Unreachable | Self::NoRoute => R::TelephonyProviderUnavailable,
            Self::Rejected { status, after_our_cancel } => match status {
                486 | 600 => R::DialBusy,
                408 | 480 => R::DialNoAnswer,
                487 if after_our_cancel => R::DialNoAnswer,
                404 | 484 | 604 => R::InvalidDestination,
                // A challenge we could not answer, or answered and got again: the credentials
                // are missing or wrong either way.
                401 | 403 | 407 => R::TelephonyProviderPermissionDenied,
                502 | 503 => R::TelephonyProviderUnavailable,
                603 => R::UserDeclined,
                _ => R::DialFailed,
            },
        }
    }
}

/// The post-call analysis every ended call gets now: what the ending itself tells. Summary,
/// sentiment and success judged from the conversation come with the voice agent.
pub fn basic_analysis(status: CallStatus, reason: DisconnectionReason) -> serde_json::Value {
    let never_connected = status == CallStatus::NotConnected;
    serde_json::json!({
        "call_summary": null,
        "in_voicemail": reason == DisconnectionReason::VoicemailReached,
        "user_sentiment": "Unknown",
        "call_successful": if never_connected { serde_json::Value::Bool(false) } else { serde_json::Value::Null },
        "custom_analysis_data": {},
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use DisconnectionReason as R;

    fn rejected(status: u16) -> DisconnectionReason {
        DialFailure::Rejected { status, after_our_cancel: false }.reason()
    }

    #[test]
    fn final_statuses_map_to_the_documented_reasons() {
        let table = [
            (486, R::DialBusy),
            (600, R::DialBusy),
            (408, R::DialNoAnswer),
            (480, R::DialNoAnswer),
            (404, R::InvalidDestination),
            (484, R::InvalidDestination),
            (604, R::InvalidDestination),
            (403, R::TelephonyProviderPermissionDenied),
            (502, R::TelephonyProviderUnavailable),
            (503, R::TelephonyProviderUnavailable),
            (603, R::UserDeclined),
            (500, R::DialFailed),
            (488, R::DialFailed),
            (487, R::DialFailed),
        ];
        for (status, reason) in table {
            assert_eq!(rejected(status), reason, "{status}");
        }
    }

    #[test]
    fn cancels_challenges_and_silence_have_their_own_reasons() {
        let after_cancel = DialFailure::Rejected { status: 487, after_our_cancel: true };
        assert_eq!(after_cancel.reason(), R::DialNoAnswer);
        let challenged_again = DialFailure::Rejected { status: 407, after_our_cancel: false };
        assert_eq!(challenged_again.reason(), R::TelephonyProviderPermissionDenied);
        assert_eq!(DialFailure::RingTimeout.reason(), R::DialNoAnswer);
        assert_eq!(DialFailure::Unreachable.reason(), R::TelephonyProviderUnavailable);
        assert_eq!(DialFailure::NoRoute.termination(), Termination::not_connected(R::TelephonyProviderUnavailable));
    }
}
