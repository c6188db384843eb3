//! `prewarm serve`: the HTTP service, the KEDA scaler, and the schedulers that train and
//! actuate on the service core (`prewarm_trainer::service`).

use anyhow::{Context, Result};
use prewarm_shared::classify::ClassificationRules;
use prewarm_trainer::config::TrainerConfig;
use prewarm_trainer::service::{AppState, system_clock};
use prewarm_trainer::store::Store;

#[derive(clap::Args)]
pub struct ServeArgs {
    /// Listen address; overrides the file and PREWARM_LISTEN.
    #[arg(long)]
    pub listen: Option<std::net::SocketAddr>,
}

pub fn serve(args: &ServeArgs, config: TrainerConfig, rules: ClassificationRules) -> Result<()> {
    let &ServeArgs { listen } = args;
    run_service(config, rules, listen)
}

fn run_service(
    mut config: TrainerConfig,
    rules: ClassificationRules,
    listen: Option<std::net::SocketAddr>,
) -> Result<()> {
    if let Some(listen) = listen {
        config.listen = listen;
    }
    let mut store = Store::open(&config.store_path())
        .with_context(|| format!("opening the store {}", config.store_path().display()))?;
    if let Some(mb) = config.store_max_mb {
        store.limit_size(mb * 1024 * 1024)?;
    }
    if config.store_read_only {
        store.set_read_only(true)?;
    }
    let events = super::data::clickhouse_events(&config)?;
    let mut state = AppState::new(config, store, rules, system_clock);
    if let Some(events) = events {
        state = state.with_events(events);
    }
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(state.config.listen)
            .await
            .with_context(|| format!("binding {}", state.config.listen))?;
        tracing::info!(addr = %listener.local_addr()?, "prewarm trainer listening");
        tokio::spawn(periodic_training(state.clone()));
        tokio::spawn(periodic_actuation(state.clone()));
        if let Some(keda) = state.config.actuate.keda_listen {
            let listener = tokio::net::TcpListener::bind(keda)
                .await
                .with_context(|| format!("binding the KEDA scaler on {keda}"))?;
            tracing::info!(addr = %listener.local_addr()?, "KEDA external scaler listening");
            let scaler = state.clone();
            tokio::spawn(async move {
                if let Err(e) = prewarm_trainer::actuate::keda::serve_on(scaler, listener).await {
                    tracing::error!(error = %e, "the KEDA external scaler stopped");
                }
            });
        }
        prewarm_trainer::web::serve(listener, state, shutdown()).await?;
        Ok(())
    })
}

/// Retrains and publishes every `train_interval_secs`, and prunes old events.
/// Every `actuate.interval_secs`: the plan to the webhook, alert rules evaluated, alerts
/// delivered. Runs with or without a webhook (alerts are listed in /v1/status and /metrics).
async fn periodic_actuation(state: AppState) {
    let config = &state.config.actuate;
    let webhook = match (&config.webhook_url, &config.webhook_secret) {
        (Some(url), Some(secret)) => Some(prewarm_trainer::actuate::Webhook::new(url, secret, config)),
        _ => None,
    };
    let mut ticker = tokio::time::interval(std::time::Duration::from_secs(config.interval_secs));
    loop {
        ticker.tick().await;
        let (state, webhook) = (state.clone(), webhook.clone());
        let outcome = tokio::task::spawn_blocking(move || {
            prewarm_trainer::actuate::cycle(&state, webhook.as_ref(), system_clock())
        })
        .await;
        match outcome {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "actuation cycle failed"),
            Err(e) => tracing::warn!(error = %e, "actuation cycle panicked"),
        }
    }
}

async fn periodic_training(state: AppState) {
    let interval = state.config.train_interval_secs;
    if interval == 0 {
        return;
    }
    let mut ticker = tokio::time::interval(std::time::Duration::from_secs(interval));
    ticker.tick().await;
    // Past forecasts, kept between trainings: the skill and bands of each are measured on them.
    let ledger = std::sync::Arc::new(std::sync::Mutex::new(prewarm_trainer::forecast::ledger::Ledger::default()));
    loop {
        ticker.tick().await;
        let state = state.clone();
        let ledger = ledger.clone();
        let outcome = tokio::task::spawn_blocking(move || {
            let mut ledger = ledger.lock().map_err(|_| anyhow::anyhow!("ledger lock poisoned"))?;
            let run = prewarm_trainer::service::training_tick(&state, system_clock(), &mut ledger)?;
            anyhow::Ok(run.version.0)
        })
        .await;
        match outcome {
            Ok(Ok(version)) => tracing::info!(version, "periodic training done"),
            Ok(Err(e)) => tracing::warn!(error = %e, "periodic training failed"),
            Err(e) => tracing::warn!(error = %e, "periodic training panicked"),
        }
    }
}

async fn shutdown() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        if let Ok(mut s) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            s.recv().await;
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! { () = ctrl_c => {}, () = terminate => {} }
    tracing::info!("shutting down");
}
