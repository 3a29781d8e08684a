//! The `uponai` binary: parse the command line, then hand over to the library.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use tokio_util::sync::CancellationToken;
use uponai::App;
use uponai::config::{FileSettings, Overrides, Settings};
use uponai::domain::{KeyId, WorkspaceId};
use uponai::startup::{generate_secret, open_store};

/// Self-hostable voice-AI calling platform with a Retell-compatible API.
#[derive(Debug, Parser)]
#[command(name = "uponai", version)]
struct Cli {
    /// TOML config file with any of: http, sip, data_dir, api_key.
    #[arg(long, env = "UPONAI_CONFIG", global = true)]
    config: Option<PathBuf>,
    /// Directory holding the SQLite database (uponai.db) and recordings [default: uponai-data].
    #[arg(long, env = "UPONAI_DATA_DIR", global = true)]
    data_dir: Option<PathBuf>,
    /// Directory of the offline speech assets, as `scripts/assets` installs them
    /// [default: $XDG_CACHE_HOME/uponai/assets, else ~/.cache/uponai/assets].
    #[arg(long, env = "UPONAI_ASSETS_DIR", global = true)]
    assets_dir: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the server: HTTP API (and, from M2, SIP).
    // Boxed: the server's options are many, the other commands' few.
    Serve(Box<ServeArgs>),
    /// Manage API keys in the data directory (works while the server runs).
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Start everything on embedded defaults in a temporary data dir, have a demo agent call a
    /// simulated callee over SIP on loopback, and print the transcript, the latency and the
    /// recording's path.
    Demo,
    /// Submit a CSV of numbers as a batch campaign to a running server and show its progress.
    /// The phone-number column (phone_number, phone, number, to_number) becomes each call's
    /// destination; every other column becomes a dynamic variable.
    Batch(BatchArgs),
    /// Have an agent of a running server call a simulated callee (a persona, read from a JSON
    /// file) on the server's loopback, over real SIP and RTP, and print the call's transcript
    /// and latency and what the persona heard. Try an agent before it goes live.
    Simulate(SimulateArgs),
}

#[derive(Debug, Args)]
struct SimulateArgs {
    /// The agent that calls.
    #[arg(long)]
    agent_id: String,
    /// The persona, as JSON: {"name", "lines": [{"say"?, "press"?, "when"?}], "hang_up_after_ms"?}.
    #[arg(long)]
    persona: PathBuf,
    /// A dynamic variable for the call, as name=value (repeatable).
    #[arg(long = "var")]
    variables: Vec<String>,
    /// Base URL of the server's API (http only).
    #[arg(long, env = "UPONAI_URL", default_value = "http://127.0.0.1:8080")]
    url: String,
    /// API key of the workspace.
    #[arg(long, env = "UPONAI_API_KEY", hide_env_values = true)]
    api_key: String,
}

#[derive(Debug, Args)]
struct BatchArgs {
    /// The CSV file (header row required).
    #[arg(long)]
    csv: PathBuf,
    /// The workspace number to call from.
    #[arg(long)]
    from: String,
    /// Base URL of the server's API (http only).
    #[arg(long, env = "UPONAI_URL", default_value = "http://127.0.0.1:8080")]
    url: String,
    /// API key of the workspace.
    #[arg(long, env = "UPONAI_API_KEY", hide_env_values = true)]
    api_key: String,
    /// A name for the batch.
    #[arg(long)]
    name: Option<String>,
    /// Concurrency kept free for other calls while the batch runs.
    #[arg(long)]
    reserved_concurrency: Option<u32>,
    /// Return once queued instead of following progress.
    #[arg(long)]
    no_wait: bool,
}

#[derive(Debug, Args)]
struct ServeArgs {
    /// Address of the HTTP API [default: 127.0.0.1:8080].
    #[arg(long, env = "UPONAI_HTTP")]
    http: Option<SocketAddr>,
    /// Address of the SIP user agent (used from M2) [default: 127.0.0.1:5060].
    #[arg(long, env = "UPONAI_SIP")]
    sip: Option<SocketAddr>,
    /// Key to bootstrap a fresh data directory with, instead of a generated one; added to
    /// the first workspace if missing.
    #[arg(long, env = "UPONAI_API_KEY", hide_env_values = true)]
    api_key: Option<String>,
    /// Local UDP port range for RTP media [default: 20000-29999].
    #[arg(long, env = "UPONAI_RTP_PORTS")]
    rtp_ports: Option<String>,
    /// IP address put in SIP Contact and SDP, when peers reach this host by another address
    /// than the SIP bind address (NAT) [default: the SIP bind address].
    #[arg(long, env = "UPONAI_EXTERNAL_IP")]
    external_ip: Option<std::net::IpAddr>,
    /// Base URL under which others reach this server's HTTP API; recording links use it
    /// [default: http://<--http address>].
    #[arg(long, env = "UPONAI_PUBLIC_URL")]
    public_url: Option<String>,
    /// End a call when no RTP has arrived from the other side for this many seconds [default: 30].
    #[arg(long, env = "UPONAI_NO_AUDIO_TIMEOUT_SECS")]
    no_audio_timeout_secs: Option<u64>,
    /// How long an inbound call at the concurrency limit rings waiting for a slot before it
    /// goes to the number's fallback_number or is refused [default: 40].
    #[arg(long, env = "UPONAI_INBOUND_QUEUE_SECS")]
    inbound_queue_secs: Option<u64>,
    /// Webhook delivery attempts per event before it is given up (the first included) [default: 16].
    #[arg(long, env = "UPONAI_WEBHOOK_MAX_ATTEMPTS")]
    webhook_max_attempts: Option<u32>,
    /// Delay before the first webhook retry; it doubles after each failure, with jitter [default: 1000].
    #[arg(long, env = "UPONAI_WEBHOOK_RETRY_BASE_MS")]
    webhook_retry_base_ms: Option<u64>,
    /// Longest delay between two webhook attempts [default: 600000].
    #[arg(long, env = "UPONAI_WEBHOOK_RETRY_CAP_MS")]
    webhook_retry_cap_ms: Option<u64>,
    /// Let webhook, tool and trunk targets be loopback, private or link-local addresses
    /// (refused by default, so tenants cannot reach this host's network or cloud metadata).
    #[arg(long, env = "UPONAI_ALLOW_PRIVATE_TARGETS")]
    allow_private_targets: bool,
    /// For benchmarks: agents hear and speak through instant stand-ins (loudness for speech,
    /// a transcript counting words, a tone for a voice), so calls measure the platform alone.
    #[arg(long, env = "UPONAI_INSTANT_SPEECH")]
    instant_speech: bool,
    /// The OpenAI-compatible model server of `retell-llm` agents (its API base, e.g.
    /// https://api.openai.com/v1 or http://127.0.0.1:8000/v1), unless a workspace names its own.
    #[arg(long, env = "UPONAI_LLM_BASE_URL")]
    llm_base_url: Option<String>,
    /// The API key sent to that server (as a bearer token).
    #[arg(long, env = "UPONAI_LLM_API_KEY", hide_env_values = true)]
    llm_api_key: Option<String>,
    /// The model name sent [default: each LLM's own `model`].
    #[arg(long, env = "UPONAI_LLM_MODEL")]
    llm_model: Option<String>,
    /// Deepgram's API key: agents with `custom_stt_config.provider: "deepgram"` transcribe
    /// through its live websocket.
    #[arg(long, env = "UPONAI_DEEPGRAM_API_KEY", hide_env_values = true)]
    deepgram_api_key: Option<String>,
    /// Deepgram's websocket base [default: wss://api.deepgram.com].
    #[arg(long, env = "UPONAI_DEEPGRAM_URL")]
    deepgram_url: Option<String>,
    /// ElevenLabs' API key: `11labs-<voice id>` voices speak through it.
    #[arg(long, env = "UPONAI_ELEVENLABS_API_KEY", hide_env_values = true)]
    elevenlabs_api_key: Option<String>,
    /// ElevenLabs' API base [default: https://api.elevenlabs.io].
    #[arg(long, env = "UPONAI_ELEVENLABS_URL")]
    elevenlabs_url: Option<String>,
}

#[derive(Debug, Subcommand)]
enum KeysCommand {
    /// Create a key and print it (shown once).
    Create {
        /// A label for the key.
        #[arg(long, default_value = "cli")]
        name: String,
        /// Add the key to this workspace [default: the first workspace].
        #[arg(long, conflicts_with = "new_workspace")]
        workspace: Option<String>,
        /// Create a new workspace with this name and give it the key.
        #[arg(long)]
        new_workspace: Option<String>,
        /// Make it the workspace's webhook key: webhooks are signed with it (a workspace's
        /// first key is its webhook key anyway). Its secret is kept in the data directory.
        #[arg(long)]
        webhook: bool,
    },
    /// List keys (never their secrets).
    List,
    /// Revoke a key by its id (key_…); requests with it are refused at once. A workspace's
    /// webhook key cannot be revoked until another key is made the webhook key.
    Revoke { key_id: String },
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let runtime = tokio::runtime::Runtime::new().context("start tokio runtime")?;
    runtime.block_on(run(cli))
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let file = FileSettings::load(cli.config.as_deref())?;
    match cli.command {
        Command::Serve(args) => {
            uponai::telemetry::init();
            let overrides = Overrides {
                http: args.http,
                sip: args.sip,
                data_dir: cli.data_dir,
                api_key: args.api_key,
                rtp_ports: args.rtp_ports,
                external_ip: args.external_ip,
                public_url: args.public_url,
                no_audio_timeout_secs: args.no_audio_timeout_secs,
                inbound_queue_secs: args.inbound_queue_secs,
                webhook_max_attempts: args.webhook_max_attempts,
                webhook_retry_base_ms: args.webhook_retry_base_ms,
                webhook_retry_cap_ms: args.webhook_retry_cap_ms,
                // Absent means "not given here": the config file may still say true.
                allow_private_targets: args.allow_private_targets.then_some(true),
                assets_dir: cli.assets_dir,
                instant_speech: args.instant_speech.then_some(true),
                llm_base_url: args.llm_base_url,
                llm_api_key: args.llm_api_key,
                llm_model: args.llm_model,
                deepgram_api_key: args.deepgram_api_key,
                deepgram_url: args.deepgram_url,
                elevenlabs_api_key: args.elevenlabs_api_key,
                elevenlabs_url: args.elevenlabs_url,
            };
            serve(Settings::resolve(overrides, file)?).await
        }
        Command::Demo => {
            uponai::telemetry::init_with_default("warn");
            uponai::demo::run(cli.assets_dir).await
        }
        Command::Batch(args) => {
            uponai::cli_batch::run(uponai::cli_batch::BatchOptions {
                url: &args.url,
                api_key: &args.api_key,
                from_number: &args.from,
                csv: &args.csv,
                name: args.name.as_deref(),
                reserved_concurrency: args.reserved_concurrency,
                wait: !args.no_wait,
            })
            .await
        }
        Command::Simulate(args) => {
            uponai::cli_simulate::run(uponai::cli_simulate::SimulateOptions {
                url: &args.url,
                api_key: &args.api_key,
                agent_id: &args.agent_id,
                persona: &args.persona,
                variables: &args.variables,
            })
            .await
        }
        Command::Keys(command) => {
            let settings = Settings::resolve(Overrides { data_dir: cli.data_dir, ..Overrides::default() }, file)?;
            keys(settings, command).await
        }
    }
}

async fn serve(settings: Settings) -> anyhow::Result<()> {
    let app = App::build(settings.clone()).await?;
    if let Some(bootstrap) = &app.bootstrap {
        match &bootstrap.generated_key {
            Some(key) => println!(
                "Created workspace {:?} in {}.\nAPI key (shown once, keep it): {key}",
                bootstrap.workspace_name,
                settings.data_dir.display()
            ),
            None => println!("Created workspace {:?} with the key from UPONAI_API_KEY.", bootstrap.workspace_name),
        }
    }
    println!("uponai listening on http://{} (SIP on {} udp+tcp)", app.http_addr(), app.sip_addr());
    let shutdown = CancellationToken::new();
    tokio::spawn(stop_on_signal(shutdown.clone()));
    app.run_until_stopped(shutdown).await
}

/// Cancels `shutdown` on SIGINT or SIGTERM.
async fn stop_on_signal(shutdown: CancellationToken) {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(err) => {
                tracing::warn!(error = %err, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        () = terminate => {}
    }
    tracing::info!("shutdown requested");
    shutdown.cancel();
}

/// Runs one store operation of the `keys` commands, again while the database is locked: they
/// run beside a live server whose writes may hold SQLite's lock, and each operation is one
/// statement, so one refused as busy wrote nothing and is safe to repeat.
async fn when_not_busy<T, F, Fut>(mut operation: F) -> Result<T, uponai::store::StoreError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, uponai::store::StoreError>>,
{
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        match operation().await {
            Err(err) if err.is_busy() && tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
            result => return result,
        }
    }
}

async fn keys(settings: Settings, command: KeysCommand) -> anyhow::Result<()> {
    let store = open_store(&settings).await?;
    match command {
        KeysCommand::Create { name, workspace, new_workspace, webhook } => {
            let workspace_id = match (workspace, new_workspace) {
                (Some(raw), _) => {
                    let id = WorkspaceId::parse(&raw).with_context(|| format!("{raw:?} is not a workspace id"))?;
                    anyhow::ensure!(when_not_busy(|| store.workspace_exists(&id)).await?, "no workspace {raw}");
                    id
                }
                (None, Some(name)) => when_not_busy(|| store.create_workspace(&name)).await?,
                (None, None) => match when_not_busy(|| store.first_workspace()).await? {
                    Some(id) => id,
                    None => when_not_busy(|| store.create_workspace("default")).await?,
                },
            };
            let secret = generate_secret();
            let key_id = when_not_busy(|| store.create_api_key(&workspace_id, &name, &secret)).await?;
            if webhook || when_not_busy(|| store.webhook_secret(&workspace_id)).await?.is_none() {
                when_not_busy(|| store.set_webhook_key(&workspace_id, &key_id, &secret)).await?;
            }
            println!("{key_id} workspace={workspace_id}\n{secret}");
        }
        KeysCommand::List => {
            for key in store.list_api_keys().await? {
                let mut state = if key.revoked_at.is_some() { "revoked" } else { "active" }.to_owned();
                if store.is_webhook_key(&key.key_id).await? {
                    state.push_str(",webhook");
                }
                println!("{}\t{}\t{}\t{}…\t{}", key.key_id, key.workspace_id, key.name, key.key_prefix, state);
            }
        }
        KeysCommand::Revoke { key_id } => {
            let id = KeyId::parse(&key_id).with_context(|| format!("{key_id:?} is not a key id"))?;
            anyhow::ensure!(
                !store.is_webhook_key(&id).await?,
                "{key_id} is its workspace's webhook key; make another key the webhook key first (keys create --webhook)"
            );
            store.revoke_api_key(&id).await.with_context(|| format!("revoke {key_id}"))?;
            println!("revoked {key_id}");
        }
    }
    store.close().await;
    Ok(())
}
