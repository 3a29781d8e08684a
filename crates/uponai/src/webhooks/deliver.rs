//! Sends due outbox events: one attempt per event at a time, many events at once, a call's
//! events one after another (the store only ever hands out the oldest pending event of a
//! call). Every attempt has the target's timeout; its result and the event's next state are
//! recorded together, so a crash before that sends the event again: at least once.
//!
//! Slots are shared fairly: at most `MAX_IN_FLIGHT_PER_WORKSPACE` of the `MAX_IN_FLIGHT`
//! go to one workspace, so a workspace whose receiver never answers holds only its own
//! slots until its attempts time out, and the others' events go on. What an attempt
//! records is what a tenant may read (`list-call-webhooks`): which class of failure, never
//! the operating system's error, so the log is no port-scanning oracle.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand::Rng;
use tokio::sync::Semaphore;
use tokio_util::task::TaskTracker;

use super::Webhooks;
use super::sign::{SIGNATURE_HEADER, signature};
use crate::domain::{EventId, WorkspaceId, now_ms};
use crate::egress::Refused;
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
/// Attempts in flight at once for one workspace.
const MAX_IN_FLIGHT_PER_WORKSPACE: usize = 8;

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
    /// Attempts running per workspace; a workspace at the cap starts no more.
    per_workspace: HashMap<WorkspaceId, usize>,
}

/// Moves an event from running to finished when its attempt task ends (after the attempt
/// was recorded), however it ends.
struct InFlight {
    flights: Arc<Mutex<Flights>>,
    event_id: EventId,
    workspace_id: WorkspaceId,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let mut flights = self.flights.lock().unwrap_or_else(|p| p.into_inner());
        flights.running.remove(&self.event_id);
        flights.finished_since_read.insert(self.event_id.clone());
        if let Some(count) = flights.per_workspace.get_mut(&self.workspace_id) {
            *count -= 1;
            if *count == 0 {
                flights.per_workspace.remove(&self.workspace_id);
            }
        }
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
        // A workspace's rows in the read are at most the cap, of which its running attempts
        // and those it has no slot for are at most twice what runs: reading that many more
        // than there are free slots finds every startable event.
        let per_workspace = i64::try_from(MAX_IN_FLIGHT_PER_WORKSPACE).unwrap_or(i64::MAX);
        let due = self
            .webhooks
            .store
            .due_webhooks_any_workspace(now_ms, per_workspace, i64::try_from(free + 2 * busy).unwrap_or(i64::MAX))
            .await?;
        let mut started = 0;
        for event in due {
            let Ok(permit) = self.slots.clone().try_acquire_owned() else { break };
            {
                let mut flights = self.in_flight.lock().unwrap_or_else(|p| p.into_inner());
                let workspace_busy = flights.per_workspace.get(&event.workspace_id).copied().unwrap_or(0);
                if workspace_busy >= MAX_IN_FLIGHT_PER_WORKSPACE
                    || flights.finished_since_read.contains(&event.event_id)
                    || !flights.running.insert(event.event_id.clone())
                {
                    continue;
                }
                *flights.per_workspace.entry(event.workspace_id.clone()).or_default() += 1;
            }
            let guard =
                InFlight { flights: self.in_flight.clone(), event_id: event.event_id.clone(), workspace_id: event.workspace_id.clone() };
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
    // The URL was checked when saved; checked again here because its variables were filled
    // since, and an IP-literal host never reaches the client's guarded resolver.
    let refused = match url::Url::parse(&event.url) {
        Ok(url) => webhooks.egress.check_literal(&url).err(),
        Err(_) => None,
    };
    let result = match refused {
        Some(refused) => Err(Failure::Refused(refused)),
        None => request.body(event.body.clone()).send().await.map_err(Failure::Http),
    };
    let duration_ms = i64::try_from(clock.elapsed().as_millis()).unwrap_or(i64::MAX);
    let (status_code, error) = match result {
        Ok(response) if response.status().is_success() => (Some(response.status().as_u16()), None),
        Ok(response) => (Some(response.status().as_u16()), Some(format!("answered {}", response.status()))),
        Err(failure) => (None, Some(failure.describe(event))),
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

/// Why an attempt got no answer.
enum Failure {
    /// The egress guard stopped it before anything was sent.
    Refused(Refused),
    Http(reqwest::Error),
}

impl Failure {
    /// The text recorded for the tenant: the class of failure only. The cause chain (the
    /// OS's "connection refused" or "timed out", a TLS alert) would tell open ports from
    /// closed ones, so it goes to the operator's log instead.
    fn describe(&self, event: &WebhookRow) -> String {
        let err = match self {
            Self::Refused(refused) => return refused.to_string(),
            Self::Http(err) => err,
        };
        if let Some(refused) = find_cause::<Refused>(err) {
            return refused.to_string();
        }
        tracing::debug!(event_id = %event.event_id, error = %root_cause(err), "webhook attempt failed");
        if err.is_timeout() {
            format!("no answer within {} ms", event.timeout_ms)
        } else if err.is_connect() {
            "could not connect".to_owned()
        } else if err.is_builder() {
            "not a usable URL".to_owned()
        } else {
            "the connection failed before an answer".to_owned()
        }
    }
}

fn find_cause<'a, E: std::error::Error + 'static>(err: &'a (dyn std::error::Error + 'static)) -> Option<&'a E> {
    let mut cause = Some(err);
    while let Some(current) = cause {
        if let Some(found) = current.downcast_ref::<E>() {
            return Some(found);
        }
        cause = current.source();
    }
    None
}

/// The innermost error's message: reqwest's own top level only says "error sending request".
fn root_cause(err: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = err;
    while let Some(next) = cause.source() {
        cause = next;
    }
    cause.to_string()
}
