//! Pacing seen from the trunk: sipp timestamps every INVITE it receives.

use std::time::Duration;

use serde_json::json;

use crate::helpers::spawn_app;
use crate::sipp::{Sipp, Transport, agent_with};

/// The most INVITEs in any one-second window starting at an INVITE.
fn busiest_second(times: &[f64]) -> usize {
    (0..times.len()).map(|i| times[i..].iter().take_while(|t| **t - times[i] < 1.0).count()).max().unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_on_a_telnyx_number_leaves_at_16_cps_and_the_rest_get_a_429_that_works() {
    let _serial = crate::serial().await;
    let app = spawn_app().await;
    let sipp = Sipp::uas_traced("reject.xml", Transport::Udp, &[("__STATUS__", "486")]);
    let settings = app
        .patch(
            "/update-workspace-settings",
            json!({"telnyx_trunk": {"termination_uri": format!("sip:{};transport=udp", sipp.addr()), "auth_username": "tx-user"},
                   "cps_config": {"telnyx": 16}, "concurrency_limit": 1000}),
        )
        .await;
    assert_eq!(settings.status, reqwest::StatusCode::OK, "{}", settings.body);
    let agent_id = agent_with(&app, json!({})).await;
    let number = app
        .post(
            "/create-phone-number",
            json!({"phone_number": "+14155550100", "number_provider": "telnyx", "outbound_agents": [{"agent_id": agent_id, "weight": 1}]}),
        )
        .await;
    assert_eq!(number.status, reqwest::StatusCode::CREATED, "{}", number.body);

    let mut accepted = 0;
    let mut n_refused = 0;
    let mut last_retry_ms = 0;
    for round in 0..3 {
        // Each refusal's Retry-After counts from its own arrival; after the whole burst,
        // the longest of this round is the wait that finds room.
        last_retry_ms = 0;
        if round > 0 {
            // A guarded second (1.05 s) refills the budget for a whole burst.
            tokio::time::sleep(Duration::from_millis(1100)).await;
        }
        for (status, retry_ms) in burst(&app, 40).await {
            match status {
                201 => accepted += 1,
                429 => {
                    n_refused += 1;
                    let retry_ms = retry_ms.expect("a 429 says when to retry");
                    assert!((1..=1050).contains(&retry_ms), "{retry_ms}");
                    last_retry_ms = last_retry_ms.max(retry_ms);
                }
                other => panic!("unexpected status {other}"),
            }
        }
    }
    // Waiting as long as a 429 said finds room.
    tokio::time::sleep(Duration::from_millis(last_retry_ms)).await;
    let single = app.post("/v2/create-phone-call", json!({"from_number": "+14155550100", "to_number": "+12125550123"})).await;
    assert_eq!(single.status, reqwest::StatusCode::CREATED, "after the advertised wait there is room");
    accepted += 1;
    tokio::time::sleep(Duration::from_secs(2)).await;

    let invites = sipp.stop_and_read_invites().await;
    assert_eq!(invites.len(), accepted, "sipp saw one INVITE per accepted call and none for refused ones");
    assert_eq!(accepted, 3 * 16 + 1, "three bursts of 40 at 16 CPS, plus one");
    let times: Vec<f64> = invites.iter().map(|(t, _)| *t).collect();
    let busiest = busiest_second(&times);
    assert!(busiest <= 16, "{busiest} INVITEs within one second");
    assert!(busiest >= 15, "the budget was used: {busiest}");
    let gaps: Vec<f64> = times.windows(2).map(|w| w[1] - w[0]).filter(|g| *g < 0.5).collect();
    let min_gap = gaps.iter().copied().fold(f64::INFINITY, f64::min);
    // 64 ms apart, minus scheduling jitter on a loaded 2-core machine; a burst would be ~1 ms.
    assert!(min_gap > 0.025, "INVITEs are spaced about 1/16 s apart, not bursts: closest {min_gap}");
    assert!(invites.iter().all(|(_, text)| text.contains("X-Telnyx-Username: tx-user")), "Telnyx preset header on every INVITE");
    assert_eq!(n_refused, 3 * (40 - 16));
}

/// Sends `n` create-phone-call requests at once; `(status, retry-after-ms)` of each.
async fn burst(app: &crate::helpers::TestApp, n: usize) -> Vec<(u16, Option<u64>)> {
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..n {
        let (client, url, key) = (app.client.clone(), format!("http://{}/v2/create-phone-call", app.addr), app.key.clone());
        set.spawn(async move {
            let response = client
                .post(url)
                .bearer_auth(key)
                .json(&json!({"from_number": "+14155550100", "to_number": "+12125550123"}))
                .send()
                .await
                .expect("request sent");
            let retry = response.headers().get("retry-after-ms").and_then(|v| v.to_str().ok()?.parse().ok());
            (response.status().as_u16(), retry)
        });
    }
    let mut out = Vec::new();
    while let Some(result) = set.join_next().await {
        out.push(result.expect("request task"));
    }
    out
}
