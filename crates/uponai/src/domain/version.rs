//! Which version of an agent a call or a number binding means.

/// `override_agent_version` and `agent_version` on number bindings: a number, or one of the
/// two moving references. Tags are not supported yet and are refused at the edge.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AgentVersionRef {
    Number(i64),
    Latest,
    LatestPublished,
}

impl AgentVersionRef {
    /// Parses the wire form: a non-negative integer, "latest", "latest_published", or a
    /// decimal string (query strings carry numbers as text).
    pub fn parse(raw: &serde_json::Value) -> Result<Self, String> {
        match raw {
            serde_json::Value::Number(n) => match n.as_i64() {
                Some(v) if v >= 0 => Ok(Self::Number(v)),
                _ => Err(format!("must be a non-negative integer, got {n}")),
            },
            serde_json::Value::String(s) => Self::parse_str(s),
            other => Err(format!("must be an integer or a string, got {other}")),
        }
    }

    pub fn parse_str(raw: &str) -> Result<Self, String> {
        match raw {
            "latest" => Ok(Self::Latest),
            "latest_published" => Ok(Self::LatestPublished),
            digits if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) => {
                digits.parse().map(Self::Number).map_err(|_| format!("version {digits:?} is out of range"))
            }
            other => Err(format!("version tag {other:?} is not known; use a version number, \"latest\" or \"latest_published\"")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn numbers_and_moving_references_parse() {
        assert_eq!(AgentVersionRef::parse(&json!(3)), Ok(AgentVersionRef::Number(3)));
        assert_eq!(AgentVersionRef::parse(&json!("7")), Ok(AgentVersionRef::Number(7)));
        assert_eq!(AgentVersionRef::parse(&json!("latest")), Ok(AgentVersionRef::Latest));
        assert_eq!(AgentVersionRef::parse(&json!("latest_published")), Ok(AgentVersionRef::LatestPublished));
    }

    #[test]
    fn negative_numbers_and_unknown_tags_are_refused() {
        assert!(AgentVersionRef::parse(&json!(-1)).is_err());
        assert!(AgentVersionRef::parse(&json!(1.5)).is_err());
        assert!(AgentVersionRef::parse(&json!("prod")).is_err());
        assert!(AgentVersionRef::parse(&json!(true)).is_err());
    }
}
