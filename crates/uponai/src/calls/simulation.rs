//! A simulated call's record in its call document: the persona it calls and, once the
//! persona is done, its report or why it has none. Written by the simulation API and by
//! `CallRuntime::recover`, read by Get Simulation; its shape is named here once.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::store::Document;

/// The call document's key of the record.
const KEY: &str = "simulation";
/// The call document's key of the persona's SIP address (what `trunk` dials).
pub const TARGET_KEY: &str = "simulation_target";

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SimulationRecord {
    pub persona: Value,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub report: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl SimulationRecord {
    /// A simulation whose persona has not reported yet.
    pub fn running(persona: Value) -> Self {
        Self { persona, report: None, error: None }
    }

    /// The record of a call's document, if the call is a simulation.
    pub fn of(document: &Document) -> Option<Self> {
        serde_json::from_value(document.get(KEY)?.clone()).ok()
    }

    /// Whether a call's document is a simulation's.
    pub fn is_simulation(document: &Document) -> bool {
        document.contains_key(TARGET_KEY)
    }

    pub fn ended(self, report: Value) -> Self {
        Self { report: Some(report).filter(Value::is_object), error: None, ..self }
    }

    pub fn failed(self, error: String) -> Self {
        Self { report: None, error: Some(error), ..self }
    }

    /// `running`, `ended` (the report is there) or `failed` (`error` says why).
    pub fn status(&self) -> &'static str {
        match (&self.report, &self.error) {
            (Some(_), _) => "ended",
            (None, Some(_)) => "failed",
            (None, None) => "running",
        }
    }

    /// The document patch that stores the record.
    pub fn patch(&self) -> Document {
        let mut patch = Document::new();
        // A struct of JSON values always serialises.
        patch.insert(KEY.into(), serde_json::to_value(self).unwrap_or(Value::Null));
        patch
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_record_round_trips_through_the_document_and_says_its_status() {
        let running = SimulationRecord::running(json!({"name": "p"}));
        assert_eq!(SimulationRecord::of(&running.patch()).unwrap().status(), "running");
        let ended = running.clone().ended(json!({"heard": []}));
        assert_eq!(SimulationRecord::of(&ended.patch()).unwrap().status(), "ended");
        let failed = running.failed("gone".into());
        let read = SimulationRecord::of(&failed.patch()).unwrap();
        assert_eq!((read.status(), read.error.as_deref(), read.persona), ("failed", Some("gone"), json!({"name": "p"})));
        assert!(SimulationRecord::of(&Document::new()).is_none());
    }
}
