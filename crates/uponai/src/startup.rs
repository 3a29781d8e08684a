//! Building and running the app: open the store, bootstrap the first workspace, bind the
//! listeners (exposing the real ports), then serve until told to stop.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use rand::RngCore;
use tokio_util::sync::CancellationToken;

use crate::api::{self, ApiState};
use crate::calls::{CallRuntime, CallRuntimeConfig};
use crate::config::Settings;
use crate::dispatch::Dispatcher;
use crate::store::Store;
use crate::view::RecordingLinks;
use crate::webhooks::Webhooks;

pub struct App {
    http_listener: tokio::net::TcpListener,
    store: Arc<Store>,
    runtime: Arc<CallRuntime>,
    sip_incoming: tokio::sync::mpsc::Receiver<sip::Incoming>,
    recording_links: Arc<RecordingLinks>,
    /// Set when this start created the first workspace with a generated key: shown once.
    pub bootstrap: Option<Bootstrap>,
}

/// The first workspace of a fresh data directory.
#[derive(Debug)]
pub struct Bootstrap {
    pub workspace_name: String,
    /// `None` when the key came from `UPONAI_API_KEY` (the operator already has it).
    pub generated_key: Option<String>,
}

/// A new random API key secret.
pub fn generate_secret() -> String {
    let mut bytes = [0u8; 20];
    rand::rng().fill_bytes(&mut bytes);
    format!("key_{}", hex::encode(bytes))
}

/// Opens the store of a data directory, creating the directory if needed.
pub async fn open_store(settings: &Settings) -> anyhow::Result<Store> {
    std::fs::create_dir_all(&settings.data_dir).with_context(|| format!("create data directory {}", settings.data_dir.display()))?;
    Store::open(&settings.database_path()).await
}

impl App {
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        let store = open_store(&settings).await?;
        let bootstrap = bootstrap(&store, settings.bootstrap_api_key.as_deref()).await?;
        let http_listener = tokio::net::TcpListener::bind(settings.http).await.with_context(|| format!("bind HTTP {}", settings.http))?;
        let (endpoint, sip_incoming) =
            sip::Endpoint::bind(sip::EndpointConfig { bind: settings.sip, tcp: sip::endpoint::TcpLimits::recommended() })
                .await
                .with_context(|| format!("bind SIP {}", settings.sip))?;
        let store = Arc::new(store);
        let http_addr = http_listener.local_addr().context("HTTP address")?;
        let base_url = settings.public_url.clone().unwrap_or_else(|| format!("http://{http_addr}"));
        let recordings_dir = settings.data_dir.join("recordings");
        let recording_links = Arc::new(RecordingLinks::load_or_create(&settings.data_dir, base_url, recordings_dir.clone())?);
        let webhooks =
            Webhooks::new(store.clone(), recording_links.clone(), settings.webhook_retry, settings.egress()).context("webhook client")?;
        // Checked before anything binds: without the speech assets no call can converse.
        let speech = crate::calls::voice::Speech::check(settings.assets_dir.as_deref())?;
        let runtime = CallRuntime::new(
            store.clone(),
            webhooks,
            Arc::new(crate::admission::Admissions::default()),
            endpoint,
            media::RtpPorts::new(settings.rtp_ports.clone()),
            CallRuntimeConfig {
                advertised_ip: settings.advertised_ip(),
                media_bind_ip: settings.sip.ip(),
                recordings_dir,
                no_audio_timeout: settings.no_audio_timeout,
                inbound_queue: settings.inbound_queue,
                egress: settings.egress(),
                speech,
                instant_speech: settings.instant_speech,
                llm: crate::llm::LlmServer {
                    base_url: settings.llm_base_url.clone(),
                    api_key: settings.llm_api_key.clone(),
                    model: settings.llm_model.clone(),
                },
                llm_clients: crate::llm::Clients::new(settings.egress()).context("build the model servers' HTTP clients")?,
                hosted: settings.hosted_speech(),
            },
        );
        Ok(Self { http_listener, store, runtime, sip_incoming, recording_links, bootstrap })
    }

    pub fn http_addr(&self) -> SocketAddr {
        // A bound listener always has a local address.
        self.http_listener.local_addr().expect("bound listener has an address")
    }

    /// Where SIP (UDP and TCP) listens.
    pub fn sip_addr(&self) -> SocketAddr {
        self.runtime.endpoint.local_addr()
    }

    /// Serves until `shutdown` is cancelled, then drains in-flight requests.
    pub async fn run_until_stopped(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let runtime = self.runtime.clone();
        let http_addr = self.http_addr();
        let dispatcher = Dispatcher::start(runtime.clone());
        for (workspace_id, call) in runtime.recover().await? {
            dispatcher.dispatch_when_admitted(runtime.clone(), workspace_id, call);
        }
        for batch in self.store.active_batches_any_workspace().await? {
            tracing::info!(batch_call_id = %batch.batch_call_id, "batch.resumed");
            crate::dispatch::batch::spawn(runtime.clone(), dispatcher.clone(), batch);
        }
        let router = tokio::spawn(runtime.clone().route_incoming(self.sip_incoming));

        let (sip_down_tx, sip_down) = tokio::sync::watch::channel::<Option<String>>(None);
        let supervisor = tokio::spawn(supervise_sip(runtime.endpoint.clone(), router, sip_down_tx));
        tokio::spawn(runtime.clone().sweep_registered());
        let deliveries = tokio::spawn(runtime.webhooks.clone().run(runtime.shutdown.clone()));
        tracing::info!(http = %http_addr, sip = %runtime.endpoint.local_addr(), "serving");
        let state = ApiState { store: self.store.clone(), dispatcher, calls: runtime.clone(), recording_links: self.recording_links };
        let router = api::router(state);
        let mut sip_failed = sip_down.clone();
        axum::serve(self.http_listener, router)
            .with_graceful_shutdown(async move {
                tokio::select! {
                    () = shutdown.cancelled() => {}
                    _ = sip_failed.wait_for(Option::is_some) => {}
                }
            })
            .await
            .context("HTTP server")?;
        supervisor.abort();
        // Hang up every call and let each record its end.
        runtime.shutdown.cancel();
        runtime.tracker.close();
        if tokio::time::timeout(std::time::Duration::from_secs(15), runtime.tracker.wait()).await.is_err() {
            tracing::warn!("some calls did not finish within 15 s of shutdown");
        }
        // Calls' last events are in the outbox; what is not sent now is sent after the restart.
        let _ = deliveries.await;
        self.store.close().await;
        if let Some(why) = sip_down.borrow().clone() {
            return Err(anyhow::anyhow!(why));
        }
        tracing::info!("stopped");
        Ok(())
    }

    /// The SIP endpoint, for whoever must watch or stop it from outside.
    pub fn sip_endpoint(&self) -> sip::Endpoint {
        self.runtime.endpoint.clone()
    }
}

/// Waits for SIP to stop working: the endpoint task ending (a panic, or closed) or the router
/// task ending (it panicked, or the endpoint is gone). Either is fatal: the service would stay
/// up answering HTTP but no calls, so it stops with an error for its supervisor to restart.
async fn supervise_sip(endpoint: sip::Endpoint, router: tokio::task::JoinHandle<()>, sip_down: tokio::sync::watch::Sender<Option<String>>) {
    let why = tokio::select! {
        exit = endpoint.closed() => match exit {
            sip::endpoint::EndpointExit::Panicked(panic) => format!("the SIP endpoint panicked: {panic}"),
            sip::endpoint::EndpointExit::Stopped => "the SIP endpoint stopped".to_owned(),
        },
        joined = router => match joined {
            Err(err) if err.is_panic() => "the SIP call router panicked".to_owned(),
            _ => "the SIP call router stopped".to_owned(),
        },
    };
    tracing::error!(%why, "SIP is down; stopping the service");
    let _ = sip_down.send(Some(why));
}

/// A fresh store gets one workspace and one key; a configured key is added if missing.
async fn bootstrap(store: &Store, configured_key: Option<&str>) -> anyhow::Result<Option<Bootstrap>> {
    if store.workspace_count().await? == 0 {
        let workspace_id = store.create_workspace("default").await?;
        let (secret, generated) = match configured_key {
            Some(key) => (key.to_owned(), false),
            None => (generate_secret(), true),
        };
        let key_id = store.create_api_key(&workspace_id, "bootstrap", &secret).await?;
        store.set_webhook_key(&workspace_id, &key_id, &secret).await?;
        return Ok(Some(Bootstrap { workspace_name: "default".into(), generated_key: generated.then_some(secret) }));
    }
    if let Some(key) = configured_key
        && !store.api_key_exists(key).await?
    {
        let workspace_id = store.first_workspace().await?.context("a store with workspaces has a first one")?;
        let key_id = store.create_api_key(&workspace_id, "from UPONAI_API_KEY", key).await?;
        if store.webhook_secret(&workspace_id).await?.is_none() {
            store.set_webhook_key(&workspace_id, &key_id, key).await?;
        }
    }
    Ok(None)
}
