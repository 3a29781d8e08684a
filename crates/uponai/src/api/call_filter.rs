//! `filter_criteria` of `/v3/list-calls`, compiled once into a predicate over the call
//! object as the API shows it, so every filter key means exactly the field of that name.

use serde::Deserialize;
use serde_json::{Map, Value};

use super::error::{ApiError, ApiResult};

/// One `{type, op, value[, key]}` condition.
#[derive(Clone, Debug, Deserialize)]
struct Condition {
    #[serde(rename = "type")]
    kind: String,
    op: String,
    #[serde(default)]
    value: Option<Value>,
    #[serde(default)]
    key: Option<String>,
}

#[derive(Clone, Debug)]
enum Test {
    StringOp { op: String, value: String },
    In(Vec<Value>),
    NumberOp { op: String, value: f64 },
    Between(f64, f64),
    BoolEq(bool),
    Present(bool),
}

/// All conditions must hold (an `agent` list holds if any of its entries does).
#[derive(Clone, Debug, Default)]
pub struct CallFilter {
    /// `(path in the call object, test)`.
    conditions: Vec<(Vec<String>, Test)>,
    /// `(agent_id, versions)`: OR-ed.
    agents: Vec<(String, Option<Vec<i64>>)>,
}

/// Filter keys that name one field of the call object, and where that field lives.
const SIMPLE_KEYS: &[(&str, &[&str])] = &[
    ("call_id", &["call_id"]),
    ("batch_call_id", &["batch_call_id"]),
    ("agent_tag", &["agent_tag"]),
    ("call_status", &["call_status"]),
    ("call_type", &["call_type"]),
    ("direction", &["direction"]),
    ("user_sentiment", &["call_analysis", "user_sentiment"]),
    ("data_storage_setting", &["data_storage_setting"]),
    ("disconnection_reason", &["disconnection_reason"]),
    ("call_successful", &["call_analysis", "call_successful"]),
    ("in_voicemail", &["call_analysis", "in_voicemail"]),
    ("from_number", &["from_number"]),
    ("to_number", &["to_number"]),
    ("start_timestamp", &["start_timestamp"]),
    ("end_timestamp", &["end_timestamp"]),
    ("duration_ms", &["duration_ms"]),
    ("combined_cost", &["call_cost", "combined_cost"]),
    ("e2e_latency_p50", &["latency", "e2e", "p50"]),
];

/// Filter keys holding a list of keyed conditions, and the object their keys index.
const KEYED_KEYS: &[(&str, &[&str])] = &[
    ("metadata", &["metadata"]),
    ("dynamic_variables", &["retell_llm_dynamic_variables"]),
    ("custom_analysis_data", &["call_analysis", "custom_analysis_data"]),
    ("custom_attributes", &["custom_attributes"]),
];

impl CallFilter {
    pub fn compile(criteria: &Map<String, Value>) -> ApiResult<Self> {
        let mut filter = Self::default();
        for (key, raw) in criteria {
            let field = format!("filter_criteria.{key}");
            if raw.is_null() {
                continue;
            }
            if key == "agent" {
                filter.agents = compile_agents(&field, raw)?;
            } else if let Some((_, path)) = SIMPLE_KEYS.iter().find(|(name, _)| name == key) {
                let test = compile_condition(&field, raw)?.1;
                filter.conditions.push((path.iter().map(|s| (*s).to_owned()).collect(), test));
            } else if let Some((_, path)) = KEYED_KEYS.iter().find(|(name, _)| name == key) {
                let list = raw.as_array().ok_or_else(|| ApiError::field(&field, "must be a list of conditions"))?;
                for (i, item) in list.iter().enumerate() {
                    let item_field = format!("{field}[{i}]");
                    let (sub_key, test) = compile_condition(&item_field, item)?;
                    let sub_key = sub_key.ok_or_else(|| ApiError::field(format!("{item_field}.key"), "is required"))?;
                    let mut full: Vec<String> = path.iter().map(|s| (*s).to_owned()).collect();
                    full.push(sub_key);
                    filter.conditions.push((full, test));
                }
            } else {
                return Err(ApiError::field(field, "is not a filter this install supports"));
            }
        }
        Ok(filter)
    }

    /// Whether the call (as its JSON view) passes.
    pub fn matches(&self, call: &Value) -> bool {
        let agent_ok = self.agents.is_empty()
            || self.agents.iter().any(|(agent_id, versions)| {
                call.get("agent_id").and_then(Value::as_str) == Some(agent_id)
                    && versions
                        .as_ref()
                        .is_none_or(|versions| call.get("agent_version").and_then(Value::as_i64).is_some_and(|v| versions.contains(&v)))
            });
        agent_ok
            && self.conditions.iter().all(|(path, test)| {
                let value = path.iter().try_fold(call, |node, key| node.get(key)).filter(|v| !v.is_null());
                passes(test, value)
            })
    }
}

fn compile_agents(field: &str, raw: &Value) -> ApiResult<Vec<(String, Option<Vec<i64>>)>> {
    #[derive(Deserialize)]
    struct AgentEntry {
        agent_id: String,
        version: Option<Vec<i64>>,
    }
    let entries: Vec<AgentEntry> = serde_json::from_value(raw.clone())
        .map_err(|err| ApiError::field(field, format!("must be a list of {{agent_id, version?}}: {err}")))?;
    Ok(entries.into_iter().map(|entry| (entry.agent_id, entry.version)).collect())
}

fn compile_condition(field: &str, raw: &Value) -> ApiResult<(Option<String>, Test)> {
    let condition: Condition =
        serde_json::from_value(raw.clone()).map_err(|err| ApiError::field(field, format!("must be {{type, op, value}}: {err}")))?;
    let op_err = |ops: &str| ApiError::field(format!("{field}.op"), format!("must be one of {ops} for type {}", condition.kind));
    let value = condition.value.clone().unwrap_or(Value::Null);
    let value_err = |what: &str| ApiError::field(format!("{field}.value"), format!("must be {what}"));
    let test = match condition.kind.as_str() {
        "string" => {
            if !["eq", "ne", "sw", "ew", "co"].contains(&condition.op.as_str()) {
                return Err(op_err("eq, ne, sw, ew, co"));
            }
            let value = value.as_str().ok_or_else(|| value_err("a string"))?.to_owned();
            Test::StringOp { op: condition.op.clone(), value }
        }
        "enum" => {
            if condition.op != "in" {
                return Err(op_err("in"));
            }
            Test::In(value.as_array().ok_or_else(|| value_err("a list"))?.clone())
        }
        "number" => {
            if !["eq", "ne", "gt", "ge", "lt", "le"].contains(&condition.op.as_str()) {
                return Err(op_err("eq, ne, gt, ge, lt, le"));
            }
            Test::NumberOp { op: condition.op.clone(), value: value.as_f64().ok_or_else(|| value_err("a number"))? }
        }
        "range" => {
            if condition.op != "bt" {
                return Err(op_err("bt"));
            }
            match value.as_array().map(|pair| pair.iter().map(Value::as_f64).collect::<Vec<_>>()).as_deref() {
                Some([Some(lo), Some(hi)]) => Test::Between(*lo, *hi),
                _ => return Err(value_err("a list of two numbers [lower, upper]")),
            }
        }
        "boolean" => {
            if condition.op != "eq" {
                return Err(op_err("eq"));
            }
            Test::BoolEq(value.as_bool().ok_or_else(|| value_err("a boolean"))?)
        }
        "present" => match condition.op.as_str() {
            "pr" => Test::Present(true),
            "np" => Test::Present(false),
            _ => return Err(op_err("pr, np")),
        },
        other => {
            return Err(ApiError::field(
                format!("{field}.type"),
                format!("{other:?} must be one of string, enum, number, range, boolean, present"),
            ));
        }
    };
    Ok((condition.key, test))
}

fn passes(test: &Test, value: Option<&Value>) -> bool {
    match test {
        Test::Present(wanted) => value.is_some() == *wanted,
        Test::In(options) => value.is_some_and(|v| options.contains(v)),
        Test::BoolEq(wanted) => value.and_then(Value::as_bool) == Some(*wanted),
        Test::StringOp { op, value: wanted } => {
            let Some(actual) = value.map(|v| match v {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            }) else {
                return op == "ne";
            };
            match op.as_str() {
                "eq" => actual == *wanted,
                "ne" => actual != *wanted,
                "sw" => actual.starts_with(wanted.as_str()),
                "ew" => actual.ends_with(wanted.as_str()),
                _ => actual.contains(wanted.as_str()),
            }
        }
        Test::NumberOp { op, value: wanted } => {
            let Some(actual) = value.and_then(Value::as_f64) else { return op == "ne" };
            match op.as_str() {
                "eq" => actual == *wanted,
                "ne" => actual != *wanted,
                "gt" => actual > *wanted,
                "ge" => actual >= *wanted,
                "lt" => actual < *wanted,
                _ => actual <= *wanted,
            }
        }
        Test::Between(lo, hi) => value.and_then(Value::as_f64).is_some_and(|v| *lo <= v && v <= *hi),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn filter(criteria: Value) -> CallFilter {
        CallFilter::compile(criteria.as_object().unwrap()).unwrap()
    }

    #[test]
    fn enum_range_and_metadata_conditions_combine_with_and() {
        let call = json!({"call_status": "registered", "created": 5, "start_timestamp": 1500,
                          "metadata": {"crm_id": "A-7"}, "agent_id": "agent_1", "agent_version": 2});
        assert!(filter(json!({"call_status": {"type": "enum", "op": "in", "value": ["registered"]}})).matches(&call));
        assert!(!filter(json!({"call_status": {"type": "enum", "op": "in", "value": ["ended"]}})).matches(&call));
        assert!(filter(json!({"start_timestamp": {"type": "range", "op": "bt", "value": [1000, 2000]}})).matches(&call));
        assert!(!filter(json!({"start_timestamp": {"type": "number", "op": "gt", "value": 1500}})).matches(&call));
        assert!(filter(json!({"metadata": [{"type": "string", "op": "sw", "value": "A-", "key": "crm_id"}]})).matches(&call));
        assert!(!filter(json!({"metadata": [{"type": "present", "op": "pr", "key": "other"}]})).matches(&call));
        assert!(filter(json!({"agent": [{"agent_id": "agent_9"}, {"agent_id": "agent_1", "version": [2]}]})).matches(&call));
        assert!(!filter(json!({"agent": [{"agent_id": "agent_1", "version": [3]}]})).matches(&call));
    }

    #[test]
    fn malformed_conditions_name_the_field() {
        let err =
            CallFilter::compile(json!({"duration_ms": {"type": "range", "op": "bt", "value": [1]}}).as_object().unwrap()).unwrap_err();
        assert!(err.to_string().starts_with("filter_criteria.duration_ms.value"), "{err}");
        let err = CallFilter::compile(json!({"colour": {}}).as_object().unwrap()).unwrap_err();
        assert!(err.to_string().starts_with("filter_criteria.colour"), "{err}");
    }
}
