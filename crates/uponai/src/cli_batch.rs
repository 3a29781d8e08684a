//! `uponai batch`: submits a CSV as a batch campaign to a running server and shows its
//! progress. The phone-number column becomes each task's `to_number`; every other column
//! becomes a dynamic variable, as the hosted dashboard does it.

use std::io::{IsTerminal, Write};
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, bail};
use serde_json::{Map, Value, json};

/// Names accepted for the phone-number column (case and spacing ignored).
const PHONE_COLUMNS: &[&str] = &["phone_number", "phonenumber", "to_number", "phone", "number"];

pub struct BatchOptions<'a> {
    pub url: &'a str,
    pub api_key: &'a str,
    pub from_number: &'a str,
    pub csv: &'a Path,
    pub name: Option<&'a str>,
    pub reserved_concurrency: Option<u32>,
    pub wait: bool,
}

/// Reads the CSV into tasks: `to_number` plus the other columns as dynamic variables.
pub fn read_tasks(csv: &Path) -> anyhow::Result<Vec<Value>> {
    let mut reader = csv::ReaderBuilder::new().trim(csv::Trim::All).from_path(csv).with_context(|| format!("open {}", csv.display()))?;
    let headers: Vec<String> = reader.headers()?.iter().map(str::to_owned).collect();
    let normalise = |h: &str| h.to_ascii_lowercase().replace([' ', '-'], "_");
    let Some(phone) = headers.iter().position(|h| PHONE_COLUMNS.contains(&normalise(h).as_str())) else {
        bail!("no phone-number column; expected one of {} in the header row, found {}", PHONE_COLUMNS.join(", "), headers.join(", "));
    };
    let mut tasks = Vec::new();
    for (line, record) in reader.records().enumerate() {
        let record = record.with_context(|| format!("row {}", line + 2))?;
        let to_number = record.get(phone).unwrap_or_default();
        if to_number.is_empty() {
            continue;
        }
        let variables: Map<String, Value> = headers
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != phone)
            .filter_map(|(i, name)| record.get(i).map(|value| (name.clone(), json!(value))))
            .collect();
        let mut task = json!({"to_number": to_number});
        if !variables.is_empty() {
            task["retell_llm_dynamic_variables"] = Value::Object(variables);
        }
        tasks.push(task);
    }
    if tasks.is_empty() {
        bail!("{} has no rows with a phone number", csv.display());
    }
    Ok(tasks)
}

pub async fn run(options: BatchOptions<'_>) -> anyhow::Result<()> {
    let tasks = read_tasks(options.csv)?;
    let client = reqwest::Client::new();
    let base = options.url.trim_end_matches('/');
    let mut body = json!({"from_number": options.from_number, "tasks": tasks});
    if let Some(name) = options.name {
        body["name"] = json!(name);
    }
    if let Some(reserved) = options.reserved_concurrency {
        body["reserved_concurrency"] = json!(reserved);
    }
    let response = client
        .post(format!("{base}/create-batch-call"))
        .bearer_auth(options.api_key)
        .json(&body)
        .send()
        .await
        .context("reach the server")?;
    let status = response.status();
    let reply: Value = response.json().await.context("read the server's answer")?;
    if !status.is_success() {
        bail!("the server refused the batch ({status}): {}", reply["message"].as_str().unwrap_or_default());
    }
    let id = reply["batch_call_id"].as_str().context("answer without batch_call_id")?.to_owned();
    let total = reply["total_task_count"].as_i64().unwrap_or_default();
    println!("{id}: {total} tasks queued");
    if !options.wait {
        return Ok(());
    }
    let tty = std::io::stderr().is_terminal();
    loop {
        let batch: Value = client.get(format!("{base}/get-batch-call/{id}")).bearer_auth(options.api_key).send().await?.json().await?;
        let progress = &batch["progress"];
        let count = |key: &str| progress[key].as_i64().unwrap_or_default();
        let in_flight: i64 = ["registered", "ongoing"].iter().map(|s| progress["calls"][*s].as_i64().unwrap_or_default()).sum();
        let done = count("called") - in_flight + count("failed");
        let line = format!(
            "{} {done}/{total} done · {} dialing or talking · {} failed · {}",
            bar(done, total, 30),
            in_flight,
            count("failed"),
            batch["status"].as_str().unwrap_or_default()
        );
        if tty {
            eprint!("\r{line}\x1b[K");
            let _ = std::io::stderr().flush();
        } else {
            eprintln!("{line}");
        }
        if batch["status"] == "completed" && in_flight == 0 {
            if tty {
                eprintln!();
            }
            println!("{id}: completed; calls by status: {}", progress["calls"]);
            return Ok(());
        }
        tokio::time::sleep(if tty { Duration::from_millis(500) } else { Duration::from_secs(2) }).await;
    }
}

/// `[#######.......]`
fn bar(done: i64, total: i64, width: usize) -> String {
    let filled = if total > 0 { (done.clamp(0, total) as usize * width) / total as usize } else { 0 };
    format!("[{}{}]", "#".repeat(filled), ".".repeat(width - filled))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_phone_column_becomes_to_number_and_the_rest_variables() {
        let dir = std::env::temp_dir().join(format!("uponai-csv-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("leads.csv");
        std::fs::write(&path, "First Name,Phone Number,plan\nAnn,+12125550123,gold\n,,\nBo,+12125550124,\n").unwrap();
        let tasks = read_tasks(&path).unwrap();
        assert_eq!(
            tasks,
            vec![
                json!({"to_number": "+12125550123", "retell_llm_dynamic_variables": {"First Name": "Ann", "plan": "gold"}}),
                json!({"to_number": "+12125550124", "retell_llm_dynamic_variables": {"First Name": "Bo", "plan": ""}}),
            ]
        );
        std::fs::write(&path, "name,email\nAnn,a@b\n").unwrap();
        assert!(read_tasks(&path).unwrap_err().to_string().contains("no phone-number column"));
        assert_eq!(bar(5, 10, 10), "[#####.....]");
        std::fs::remove_dir_all(dir).unwrap();
    }
}
