//! What a call may keep, by its `data_storage_setting` (the agent's, copied to the call when
//! it is created, and only ever tightened afterwards with `update-call`).
//!
//! - `everything` (also when unset): the recording (stereo and mono WAV) and the transcript.
//! - `everything_except_pii`: neither recording nor transcript. The contract keeps data "without
//!   PII when PII is detected"; nothing here detects or redacts PII yet, so what could hold it
//!   is not kept. FIXME: keep redacted transcripts once the agent scrubs them.
//! - `basic_attributes_only`: neither; only the call's basic attributes (numbers, times,
//!   status, reason, metadata, analysis of the outcome).

use serde_json::Value;

use crate::store::Document;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DataStorage {
    Everything,
    EverythingExceptPii,
    BasicAttributesOnly,
}

/// Document fields that hold what was said.
const TRANSCRIPT_FIELDS: &[&str] =
    &["transcript", "transcript_object", "transcript_with_tool_calls", "scrubbed_transcript_with_tool_calls"];

impl DataStorage {
    /// The setting of a call, from its document. An unknown spelling (the API validates it,
    /// so only a corrupt row has one) keeps the least.
    pub fn of_call(document: &Document) -> Self {
        match document.get("data_storage_setting") {
            None | Some(Value::Null) => Self::Everything,
            Some(Value::String(setting)) => match setting.as_str() {
                "everything" => Self::Everything,
                "everything_except_pii" => Self::EverythingExceptPii,
                _ => Self::BasicAttributesOnly,
            },
            Some(_) => Self::BasicAttributesOnly,
        }
    }

    pub fn keeps_recording(self) -> bool {
        self == Self::Everything
    }

    pub fn keeps_transcript(self) -> bool {
        self == Self::Everything
    }

    /// Removes from `patch` (what a call's end writes) whatever the setting does not keep.
    pub fn scrub(self, patch: &mut Document) {
        if !self.keeps_transcript() {
            for field in TRANSCRIPT_FIELDS {
                patch.remove(*field);
            }
        }
        if !self.keeps_recording() {
            patch.remove("recording_file");
            patch.remove("recording_multi_channel_file");
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn call_with(setting: Value) -> Document {
        Document::from_iter([("data_storage_setting".to_owned(), setting)])
    }

    #[test]
    fn only_everything_or_no_setting_keeps_recordings_and_transcripts() {
        for (setting, keeps) in [
            (Value::Null, true),
            (json!("everything"), true),
            (json!("everything_except_pii"), false),
            (json!("basic_attributes_only"), false),
            (json!("something_new"), false),
            (json!(7), false),
        ] {
            let storage = DataStorage::of_call(&call_with(setting.clone()));
            assert_eq!((storage.keeps_recording(), storage.keeps_transcript()), (keeps, keeps), "{setting}");
        }
        assert!(DataStorage::of_call(&Document::new()).keeps_recording());
    }

    #[test]
    fn scrubbing_for_basic_attributes_leaves_only_the_basics() {
        let mut patch = Document::from_iter([
            ("transcript".to_owned(), json!("Agent: hello")),
            ("transcript_object".to_owned(), json!([])),
            ("recording_file".to_owned(), json!("call_1.wav")),
            ("recording_multi_channel_file".to_owned(), json!("call_1.stereo.wav")),
            ("media_stats".to_owned(), json!({})),
        ]);
        DataStorage::BasicAttributesOnly.scrub(&mut patch);
        assert_eq!(patch.keys().collect::<Vec<_>>(), ["media_stats"]);
    }
}
