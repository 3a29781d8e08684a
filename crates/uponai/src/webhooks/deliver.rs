//! Sends due outbox events: one attempt per event at a time, many events at once, a call's
//! events one after another (the store only ever hands out the oldest pending event of a
//! call). Every attempt has the target's timeout; its result and the event's next state are
//! recorded together, so a crash before that sends the event again: at least once.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand::Rng;
use tokio::sync::Semaphore;
use tokio_util::task::TaskTracker;

use super::Webhooks;
use super::sign::{SIGNATURE_HEADER, signature};
use crate::domain::{EventId, now_ms};
use crate::store::{AfterAttempt, AttemptRecord, StoreError, WebhookRow};

/// Carries the event's id, the same on every attempt, for receivers to de-duplicate.
pub const EVENT_ID_HEADER: &str = "x-uponai-event-id";
/// The event's name, so receivers can route before parsing.
const EVENT_HEADER: &str = "x-uponai-event";
/// 1 for the first attempt.
const ATTEMPT_HEADER: &str = "x-uponai-delivery-attempt";

/// How often the outbox is looked at when nothing wakes the deliverer.
pub(super) const POLL_INTERVAL: Duration = Duration::from_millis(250);
/// Attempts in flight at once, across all targets.
const MAX_IN_FLIGHT: usize = 32;

pub struct Deliverer {
    webhooks: Arc<Webhooks>,
    in_flight: Arc<Mutex<Flights>>,
    slots: Arc<Semaphore>,
    tracker: TaskTracker,
}

/// Which events have an attempt under way, and which finished one since the outbox was last
/// read. An event in either set is not started: a read taken before an attempt recorded its
/// result may still show the event pending, and starting it again would send a delivered
/// event twice.
#[derive(Default)]
struct Flights {
    running: HashSet<EventId>,
    finished_since_read: HashSet<EventId>,
}

/// Moves an event from running to finished when its attempt task ends (after the attempt
/// was recorded), however it ends.
struct InFlight {
    flights: Arc<Mutex<Flights>>,
    event_id: EventId,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let mut flights = self.flights.lock().unwrap_or_else(|p| p.into_inner());
        flights.running.remove(&self.event_id);
        flights.finished_since_read.insert(self.event_id.clone());
    }
}

impl Deliverer {
    pub fn new(webhooks: Arc<Webhooks>) -> Self {
        Self { webhooks, in_flight: Arc::default(), slots: Arc::new(Semaphore::new(MAX_IN_FLIGHT)), tracker: TaskTracker::new() }
    }

    /// Starts an attempt for every event due at `now_ms` that has none in flight, as far as
    /// free slots allow; returns how many were started.
    pub async fn try_run_once(&self, now_ms: i64) -> Result<usize, StoreError> {
        let free = self.slots.available_permits();
        if free == 0 {
            return Ok(0);
        }
        let busy = {
            // Attempts finished before this read are in what it returns.
            let mut flights = self.in_flight.lock().unwrap_or_else(|p| p.into_inner());
            flights.finished_since_read.clear();
            flights.running.len()
        };
        let due = self.webhooks.store.due_webhooks_any_workspace(now_ms, i64::try_from(free + busy).unwrap_or(i64::MAX)).await?;
        let mut started = 0;
        for event in due {
            {
                let mut flights = self.in_flight.lock().unwrap_or_else(|p| p.into_inner());
                if flights.finished_since_read.contains(&event.event_id) || !flights.running.insert(event.event_id.clone()) {
                    continue;
                }
            }
            let guard = InFlight { flights: self.in_flight.clone(), event_id: event.event_id.clone() };
            let Ok(permit) = self.slots.clone().try_acquire_owned() else { break };
            let webhooks = self.webhooks.clone();
            self.tracker.spawn(async move {
                let _permit = permit;
                let Some(record) = attempt(&webhooks, &event).await else { return };
                if let Err(err) = webhooks.store.record_webhook_attempt(&event.workspace_id, &record).await {
                    tracing::warn!(event_id = %event.event_id, error = %err, "could not record a webhook attempt; it will be sent again");
                }
                drop(guard);
                webhooks.wake();
            });
            started += 1;
        }
        Ok(started)
    }

    /// Waits up to `grace` for attempts in flight.
    pub async fn drain(&self, grace: Duration) {
        self.tracker.close();
        if tokio::time::timeout(grace, self.tracker.wait()).await.is_err() {
            tracing::warn!("webhook attempts still in flight at shutdown; they are sent again after the restart");
        }
    }
}

/// One attempt: sign, send with the timeout; its outcome and what comes next, to record.
async fn attempt(webhooks: &Webhooks, event: &WebhookRow) -> Option<AttemptRecord> {
    let secret = match webhooks.store.webhook_secret(&event.workspace_id).await {
        Ok(secret) => secret,
        Err(err) => {
            tracing::warn!(event_id = %event.event_id, error = %err, "could not read the webhook key");
            return None;
        }
    };
    let number = event.attempts + 1;
    let started_at = now_ms();
    let clock = Instant::now();
    let mut request = webhooks
        .client
        .post(&event.url)
        .timeout(Duration::from_millis(u64::try_from(event.timeout_ms).unwrap_or(super::DEFAULT_TIMEOUT_MS as u64)))
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .header(EVENT_ID_HEADER, event.event_id.as_str())
        .header(EVENT_HEADER, &event.event)
        .header(ATTEMPT_HEADER, number.to_string());
    match &secret {
        // Signed at send time: receivers reject signatures older than five minutes.
        Some(key) => request = request.header(SIGNATURE_HEADER, signature(&event.body, key, now_ms())),
        None => tracing::warn!(workspace_id = %event.workspace_id, "workspace has no webhook key: sending unsigned"),
    }
    let result = request.body(event.body.clone()).send().await;
    let duration_ms = i64::try_from(clock.elapsed().as_millis()).unwrap_or(i64::MAX);
    let (status_code, error) = match result {
        Ok(response) if response.status().is_success() => (Some(response.status().as_u16()), None),
        Ok(response) => (Some(response.status().as_u16()), Some(format!("answered {}", response.status()))),
        Err(err) if err.is_timeout() => (None, Some(format!("no answer within {} ms", event.timeout_ms))),
        Err(err) if err.is_connect() => (None, Some(format!("could not connect: {}", root_cause(&err)))),
        Err(err) => (None, Some(root_cause(&err))),
    };
    let series = u32::try_from(event.series_attempts + 1).unwrap_or(u32::MAX);
    let next = if error.is_none() {
        AfterAttempt::Delivered
    } else {
        match webhooks.policy.next_delay(series, rand::rng().random::<f64>()) {
            Some(delay) => AfterAttempt::RetryAt(now_ms() + i64::try_from(delay.as_millis()).unwrap_or(i64::MAX / 2)),
            None => AfterAttempt::GiveUp,
        }
    };
    let fields = (event.event_id.as_str(), event.call_id.as_str(), event.event.as_str());
    match (&next, &error) {
        (AfterAttempt::Delivered, _) => {
            tracing::info!(event_id = fields.0, call_id = fields.1, event = fields.2, attempt = number, "webhook.delivered")
        }
        (AfterAttempt::RetryAt(at), Some(why)) => {
            tracing::info!(event_id = fields.0, call_id = fields.1, event = fields.2, attempt = number, retry_in_ms = at - now_ms(), error = %why, "webhook.retry")
        }
        (_, why) => {
            tracing::warn!(event_id = fields.0, call_id = fields.1, event = fields.2, attempt = number, error = ?why, "webhook.failed")
        }
    }
    Some(AttemptRecord { event_id: event.event_id.clone(), started_at, duration_ms, status_code, error, next })
}

/// The innermost error's message: reqwest's own top level only says "error sending request".
fn root_cause(err: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = err;
    while let Some(next) = cause.source() {
        cause = next;
    }
    cause.to_string()
}
