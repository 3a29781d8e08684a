//! Batch campaigns: one task per running batch takes its queued tasks in order and dials
//! them through the same admissions as any call (the trunk's CPS, the workspace's concurrency
//! minus the batch's `reserved_concurrency`), only inside the batch's calling window.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

use super::{Dispatcher, sleep_unless_stopped, wait_for_admission};
use crate::calls::{CallLeg, CallRuntime, CreateCallError, NewCall, prepare_call};
use crate::domain::time_window::CallTimeWindow;
use crate::domain::{AgentId, AgentVersionRef, WorkspaceId, now_ms};
use crate::store::{BatchRow, Document};

/// Tasks read from the store per step.
const TASK_CHUNK: i64 = 20;
/// The longest a worker sleeps before looking at the clock and the batch again.
const MAX_NAP: Duration = Duration::from_secs(30);

/// The call a queued task asks for. Tasks are stored in this canonical form, validated when the
/// batch was created.
pub fn new_call_from_task(from_number: &str, task: &Document) -> NewCall {
    let text = |key: &str| task.get(key).and_then(Value::as_str).map(str::to_owned);
    let object = |key: &str| task.get(key).and_then(Value::as_object).cloned();
    let strings = |key: &str| -> Option<BTreeMap<String, String>> {
        object(key).map(|map| map.into_iter().filter_map(|(k, v)| v.as_str().map(|v| (k, v.to_owned()))).collect())
    };
    NewCall {
        leg: CallLeg::Outbound {
            from_number: from_number.to_owned(),
            to_number: text("to_number").unwrap_or_default(),
            ignore_e164_validation: task.get("ignore_e164_validation").and_then(Value::as_bool).unwrap_or(false),
            custom_sip_headers: strings("custom_sip_headers").unwrap_or_default(),
        },
        override_agent_id: text("override_agent_id").and_then(|id| AgentId::parse(&id)),
        override_agent_version: task.get("override_agent_version").and_then(|v| AgentVersionRef::parse(v).ok()),
        agent_override: object("agent_override").unwrap_or_default(),
        retell_llm_override: object("retell_llm_override").unwrap_or_default(),
        metadata: object("metadata"),
        dynamic_variables: strings("retell_llm_dynamic_variables"),
        idempotency_key: None,
        extra: Document::new(),
    }
}

/// The batch's calling window, from its stored canonical form.
pub fn window_of(batch: &BatchRow) -> Option<CallTimeWindow> {
    let doc = batch.call_time_window.as_ref()?;
    let windows: Vec<(f64, f64)> = doc
        .get("windows")
        .and_then(Value::as_array)?
        .iter()
        .filter_map(|w| Some((w.get("start")?.as_f64()?, w.get("end")?.as_f64()?)))
        .collect();
    let days: Vec<String> = doc
        .get("day")
        .and_then(Value::as_array)
        .map(|days| days.iter().filter_map(Value::as_str).map(str::to_owned).collect())
        .unwrap_or_default();
    CallTimeWindow::parse(&windows, &days, doc.get("timezone").and_then(Value::as_str)).ok()
}

/// Starts (or resumes) the worker of `batch`.
pub fn spawn(runtime: Arc<CallRuntime>, dispatcher: Dispatcher, batch: BatchRow) {
    tokio::spawn(async move {
        let batch_call_id = batch.batch_call_id.clone();
        if let Err(err) = run(&runtime, &dispatcher, batch).await {
            tracing::error!(%batch_call_id, error = %err, "batch worker stopped");
        }
    });
}

async fn run(runtime: &Arc<CallRuntime>, dispatcher: &Dispatcher, batch: BatchRow) -> anyhow::Result<()> {
    let window = window_of(&batch);
    let workspace_id: WorkspaceId = batch.workspace_id.clone();
    let reserved = u32::try_from(batch.reserved_concurrency).unwrap_or(0);
    let mut started = false;
    loop {
        // Not before the trigger time, and only inside the window.
        let now = now_ms();
        let mut nap = Duration::ZERO;
        if now < batch.scheduled_timestamp {
            nap = Duration::from_millis(u64::try_from(batch.scheduled_timestamp - now).unwrap_or(0));
        } else if let Some(window) = &window {
            let now_ts = jiff::Timestamp::from_millisecond(now).unwrap_or_else(|_| jiff::Timestamp::now());
            if !window.is_open(now_ts) {
                nap = match window.next_open(now_ts) {
                    Some(open) => Duration::from_millis(u64::try_from(open.as_millisecond() - now).unwrap_or(0)),
                    None => MAX_NAP,
                };
            }
        }
        if !nap.is_zero() {
            if !sleep_unless_stopped(runtime, nap.min(MAX_NAP)).await {
                return Ok(());
            }
            continue;
        }
        if !started {
            runtime.store.set_batch_status(&workspace_id, &batch.batch_call_id, "running").await?;
            started = true;
        }
        let tasks = runtime.store.pending_tasks(&workspace_id, &batch.batch_call_id, TASK_CHUNK).await?;
        if tasks.is_empty() {
            runtime.store.set_batch_status(&workspace_id, &batch.batch_call_id, "completed").await?;
            tracing::info!(batch_call_id = %batch.batch_call_id, "batch.completed");
            return Ok(());
        }
        for task in tasks {
            if let Some(window) = &window {
                let now_ts = jiff::Timestamp::now();
                if !window.is_open(now_ts) {
                    // The window closed mid-chunk: the outer loop waits for the next one.
                    break;
                }
            }
            let request = new_call_from_task(&batch.from_number, &task.document);
            let prepared = match prepare_call(&runtime.store, &workspace_id, request, rand::random::<f64>()).await {
                Ok(prepared) => prepared,
                Err(CreateCallError::Invalid { field, problem }) => {
                    runtime
                        .store
                        .fail_batch_task(&workspace_id, &batch.batch_call_id, task.task_index, &format!("{field}: {problem}"))
                        .await?;
                    continue;
                }
                Err(CreateCallError::Store(err)) => return Err(err.into()),
            };
            let Some(trunk) = prepared.trunk.clone() else { continue };
            let Some(ticket) = wait_for_admission(runtime, &workspace_id, &trunk, reserved).await else {
                return Ok(());
            };
            // The call and the task's "called" mark are written together; a task already
            // called (by a run that died after writing) is skipped and its ticket released.
            if let Some(call) = runtime.store.call_batch_task(&workspace_id, &batch.batch_call_id, task.task_index, &prepared.row).await? {
                dispatcher.dispatch(workspace_id.clone(), call.call_id, ticket);
            }
        }
    }
}
