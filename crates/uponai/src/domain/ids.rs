//! Opaque identifiers. Each is a prefix plus 32 lowercase hex digits of randomness.

use rand::RngCore;

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident, $prefix:literal) => {
        $(#[$doc])*
        #[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(String);

        impl $name {
            pub const PREFIX: &'static str = $prefix;

            /// A fresh random id.
            pub fn generate() -> Self {
                let mut bytes = [0u8; 16];
                rand::rng().fill_bytes(&mut bytes);
                Self(format!("{}{}", $prefix, hex::encode(bytes)))
            }

            /// Accepts any id this install could have issued; `None` for anything else, which
            /// callers answer exactly as they answer an unknown id.
            pub fn parse(raw: &str) -> Option<Self> {
                let tail = raw.strip_prefix($prefix)?;
                let well_formed = !tail.is_empty()
                    && tail.len() <= 64
                    && tail.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
                well_formed.then(|| Self(raw.to_owned()))
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

id_type!(
    /// A workspace: the tenant every row belongs to.
    WorkspaceId,
    "ws_"
);
id_type!(
    /// An API key's public id. Secrets are stored hashed, but for the workspace's webhook key.
    KeyId,
    "key_"
);
id_type!(
    /// An agent, shared by all of its versions.
    AgentId,
    "agent_"
);
id_type!(
    /// A Retell-LLM response engine, shared by all of its versions.
    LlmId,
    "llm_"
);
id_type!(
    /// A conversation-flow response engine, shared by all of its versions.
    FlowId,
    "conversation_flow_"
);
id_type!(
    /// A call, inbound or outbound.
    CallId,
    "call_"
);
id_type!(
    /// A webhook event: the same on every delivery attempt, for receivers to de-duplicate.
    EventId,
    "evt_"
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_ids_parse_back() {
        let id = AgentId::generate();
        assert_eq!(AgentId::parse(id.as_str()), Some(id));
    }

    #[test]
    fn ids_with_the_wrong_prefix_or_characters_are_rejected() {
        assert_eq!(AgentId::parse("llm_abc"), None);
        assert_eq!(AgentId::parse("agent_"), None);
        assert_eq!(AgentId::parse("agent_a b"), None);
        assert_eq!(CallId::parse("call_0123abcd"), Some(CallId("call_0123abcd".into())));
    }
}
