//! Models: `prewarm train`, `publish`, `inspect` and `diff`.

use std::path::PathBuf;

use anyhow::{Context, Result};
use prewarm_shared::classify::ClassificationRules;
use prewarm_trainer::config::TrainerConfig;
use prewarm_trainer::publish::DirPublisher;
use prewarm_trainer::service::system_clock;
use prewarm_trainer::store::{EventStore, Store};
use prewarm_trainer::train::train_and_publish_from;

#[derive(clap::Args)]
pub struct PublishArgs {
    /// Roll back to this version, or to the one before the current with `--rollback` alone.
    #[arg(long, num_args = 0..=1, default_missing_value = "previous")]
    pub rollback: Option<String>,
    /// Resume publishing after a rollback paused it (periodic and `prewarm train` publishing
    /// stay paused until then).
    #[arg(long, conflicts_with = "rollback")]
    pub resume: bool,
    /// The local KV that `wrangler dev --persist-to DIR` reads.
    #[arg(long)]
    pub local_kv: Option<PathBuf>,
    /// The wrangler executable for `--local-kv`.
    #[arg(long, default_value = "node_modules/.bin/wrangler")]
    pub wrangler: PathBuf,
    /// The wrangler configuration declaring the KV binding.
    #[arg(long, default_value = "wrangler.toml")]
    pub wrangler_config: PathBuf,
    /// Also write to Cloudflare Workers KV through its REST API (the `[kv]` configuration).
    #[arg(long)]
    pub kv: bool,
    /// Also archive to the `[object_store]` target (S3, S3-compatible or file://; needs the
    /// `object-store` build feature).
    #[arg(long)]
    pub object_store: bool,
}

pub fn publish(args: &PublishArgs, config: TrainerConfig) -> Result<()> {
    let &PublishArgs { ref rollback, resume, ref local_kv, ref wrangler, ref wrangler_config, kv: to_kv, object_store } =
        args;
    use prewarm_trainer::publish::Targets;
    use prewarm_trainer::publish::local_kv::LocalKv;
    let publisher = DirPublisher::new(config.models_dir());
    if resume {
        let was = publisher.resume()?;
        println!("{}", if was { "publishing resumed" } else { "publishing was not paused" });
        return Ok(());
    }
    let now = system_clock().0;
    let entries = match rollback.as_deref() {
        None => publisher.current_entries()?,
        Some("previous") => publisher.rollback(None, now)?,
        Some(v) => {
            publisher.rollback(Some(v.parse().with_context(|| format!("--rollback {v:?} is not a version"))?), now)?
        }
    };
    let pointer = entries.last().map(|e| prewarm_shared::ModelPointer::from_artifact(&e.value)).transpose()?;
    let version = pointer.map_or(0, |p| p.version.0);
    if rollback.is_some() {
        println!(
            "rolled back {} to version {version}; publishing is paused until `prewarm publish --resume`",
            publisher.root().display()
        );
    }
    // The configured targets ([kv], [object_store]), and the local KV of `wrangler dev` if asked.
    let mut targets = Targets::from_config(config.kv.as_ref(), config.object_store.as_ref())?;
    if to_kv && config.kv.is_none() {
        anyhow::bail!("--kv needs a [kv] section (account_id, namespace_id) and PREWARM_CF_API_TOKEN");
    }
    if object_store && config.object_store.is_none() {
        anyhow::bail!("--object-store needs an [object_store] section (url, and endpoint for S3-compatible stores)");
    }
    if let Some(dir) = local_kv {
        targets.push(Box::new(LocalKv {
            wrangler: wrangler.clone(),
            config: wrangler_config.clone(),
            binding: "PREWARM_MODEL".into(),
            persist_to: dir.clone(),
        }));
    }
    for target in targets.publish(&entries)? {
        println!("version {version}: {} blobs and the pointer written to {target}", entries.len() - 1);
    }
    Ok(())
}

#[derive(clap::Args)]
pub struct InspectArgs {
    /// A models directory (default: <data_dir>/models) or a single artifact file.
    pub path: Option<PathBuf>,
    /// A kept version of the models directory instead of the current one.
    #[arg(long, conflicts_with = "path")]
    pub version: Option<u32>,
    /// What Cloudflare Workers KV serves now (the `[kv]` configuration).
    #[arg(long, conflicts_with_all = ["path", "version"])]
    pub kv: bool,
    #[arg(long)]
    pub json: bool,
}

pub fn inspect(args: &InspectArgs, config: TrainerConfig) -> Result<()> {
    let &InspectArgs { ref path, version, kv, json } = args;
    let spec = match (path, version) {
        _ if kv => "kv".to_owned(),
        (Some(path), _) => path.display().to_string(),
        (None, Some(v)) => v.to_string(),
        (None, None) => "current".to_owned(),
    };
    let regions = load_models(&spec, &config)?;
    // Why each priority and forecast: recorded by the trainer beside the versions.
    let report = regions
        .first()
        .and_then(|r| prewarm_trainer::report::TrainingReport::read(&config.models_dir(), r.model_version));
    let about = |region: &str, id: u16| report.as_ref().and_then(|r| r.profile(region, id)).cloned();
    let why = |region: &str, id: u16| about(region, id).map(|a| a.priority_reason);
    let quality = |region: &str| report.as_ref().and_then(|r| r.regions.get(region)).map(|r| r.quality.clone());
    if json {
        let views = regions.iter().map(|r| {
            let mut view = r.to_json();
            if let (Some(q), Some(object)) = (quality(&r.region), view.as_object_mut()) {
                object.insert("quality".into(), serde_json::to_value(q).unwrap_or_default());
            }
            if let Some(profiles) = view.get_mut("profiles").and_then(|p| p.as_array_mut()) {
                for p in profiles {
                    let id = p["id"].as_u64().and_then(|id| u16::try_from(id).ok());
                    if let (Some(reason), Some(object)) = (id.and_then(|id| why(&r.region, id)), p.as_object_mut()) {
                        object.insert("priority_reason".into(), reason.into());
                    }
                    if let (Some(forecast), Some(object)) =
                        (id.and_then(|id| about(&r.region, id)).and_then(|a| a.forecast), p.as_object_mut())
                    {
                        object.insert("forecast".into(), serde_json::to_value(forecast).unwrap_or_default());
                    }
                }
            }
            view
        });
        println!("{}", serde_json::Value::Array(views.collect()));
        return Ok(());
    }
    for r in &regions {
        println!("region {} (model version {}, {} profiles)", r.region, r.model_version.0, r.k());
        let q = quality(&r.region);
        if let Some(q) = &q {
            println!("  {}", q.k_reason);
        }
        for p in &r.profiles {
            let peak = r.forecast.series.iter().find(|s| s.profile == p.id).and_then(|s| {
                let i = (0..s.expected.len()).max_by(|&a, &b| s.expected[a].total_cmp(&s.expected[b]))?;
                Some((r.forecast.start.0 + i as u64 * u64::from(r.forecast.step_secs), s.expected[i], s.upper[i]))
            });
            println!(
                "  {:>3} {:<40} {:>5.1}% users  {:?}  {:?}  cpu {:.1} ms ({:?})  mem {:.2} MB·s ({:?})  {:.0} B ({:?})",
                p.id.0,
                p.label,
                p.share_of_users * 100.0,
                p.role,
                p.priority,
                p.cost.cpu_ms.mean,
                p.cost.cpu_ms.source,
                p.cost.memory_mb_s.mean,
                p.cost.memory_mb_s.source,
                p.cost.bytes.mean,
                p.cost.bytes.source
            );
            if let Some(x) = q.as_ref().and_then(|q| q.profile(p.id)) {
                println!(
                    "      purity: device {:.2}, content {:.2} ({} users)",
                    x.device_purity, x.content_purity, x.users
                );
            }
            println!(
                "      priority {:?}: {}",
                p.priority,
                why(&r.region, p.id.0).unwrap_or_else(|| "(no reason recorded for this version)".into())
            );
            if let Some(note) = about(&r.region, p.id.0).and_then(|a| a.forecast_note) {
                println!("      forecast: {note}");
            }
            if let Some(f) = about(&r.region, p.id.0).and_then(|a| a.forecast) {
                let candidates: Vec<String> = f
                    .skill
                    .iter()
                    .filter(|s| s.mase.is_finite())
                    .map(|s| format!("{} {:.3}", s.method.name(), s.mase))
                    .collect();
                println!("      forecast model: {} — {}", f.method.name(), f.reason);
                println!("      recent out-of-sample MASE: {}", candidates.join(", "));
                println!(
                    "      band: p{:.0} of a minute's demand, calibrated on {} out-of-sample minutes; {} outlier runs masked{}",
                    f.band_quantile * 100.0,
                    f.band_scores,
                    f.masked.runs,
                    if r.profiles.len() > 1 {
                        "; published narrowed where the region total's band is lower"
                    } else {
                        ""
                    }
                );
                if let Some(choice) = f.band_choice {
                    println!("      band quantile: {}", choice.reason());
                }
            }
            if let Some((at, expected, upper)) = peak {
                println!(
                    "      forecast peak {expected:.1} req/step (band {upper:.1}) at {:02}:{:02} UTC",
                    at % 86_400 / 3600,
                    at % 3600 / 60
                );
            }
            // The centroid in the features' own units: what a typical member looks like.
            if let Some(row) = r.profile_index(p.id).and_then(|i| r.raw_centroid(i)) {
                let raw: Vec<String> = row
                    .iter()
                    .enumerate()
                    .map(|(f, v)| format!("{}={v:.2}", r.schema.names.get(f).map_or("?", String::as_str)))
                    .collect();
                println!("      centroid: {}", raw.join(" "));
            }
        }
    }
    Ok(())
}

#[derive(clap::Args)]
pub struct DiffArgs {
    pub before: String,
    pub after: String,
    #[arg(long)]
    pub json: bool,
}

pub fn diff(args: &DiffArgs, config: TrainerConfig) -> Result<()> {
    let &DiffArgs { ref before, ref after, json } = args;
    let (old, new) = (load_models(before, &config)?, load_models(after, &config)?);
    let diff = prewarm_trainer::publish::diff::diff(&old, &new);
    if json {
        println!("{}", serde_json::to_string_pretty(&diff)?);
    } else {
        print_diff(&diff);
    }
    Ok(())
}

#[derive(clap::Args)]
pub struct TrainArgs {
    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
    /// Ground truth (`prewarm synth --truth`): report how well profiles recover it.
    #[arg(long)]
    pub truth: Option<PathBuf>,
}

pub fn train(args: &TrainArgs, config: TrainerConfig, rules: ClassificationRules) -> Result<()> {
    let &TrainArgs { json, ref truth } = args;
    let store = Store::open(&config.store_path())?;
    let clickhouse = super::data::clickhouse_events(&config)?;
    let events: &dyn EventStore = match clickhouse.as_deref() {
        Some(events) => events,
        None => &store,
    };
    let publisher = DirPublisher::new(config.models_dir());
    let mut ledger = prewarm_trainer::forecast::ledger::Ledger::default();
    let run = train_and_publish_from(&store, events, &config, &rules, &publisher, system_clock(), &mut ledger)?;
    if json {
        let regions: Vec<_> = run
            .regions
            .iter()
            .map(|r| {
                let mut model = r.model.to_json();
                if let Some(m) = model.as_object_mut() {
                    m.insert("quality".into(), serde_json::to_value(&r.quality)?);
                }
                Ok(model)
            })
            .collect::<Result<_>>()?;
        println!("{}", serde_json::json!({ "version": run.version.0, "published": run.published, "regions": regions }));
        return Ok(());
    }
    println!(
        "model version {} {}",
        run.version.0,
        if run.published { "published" } else { "unchanged (not republished)" }
    );
    if let Some(path) = truth {
        let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let kinds: std::collections::HashMap<&str, &str> = text
            .lines()
            .skip(1)
            .filter_map(|l| {
                let mut f = l.split(',');
                Some((f.next()?, f.nth(1)?))
            })
            .collect();
        let mut names: Vec<&str> = kinds.values().copied().collect();
        names.sort_unstable();
        names.dedup();
        let (mut true_kind, mut found) = (Vec::new(), Vec::new());
        // Profiles are per region: compare (region, kind) with (region, profile).
        for (region_index, r) in run.regions.iter().enumerate() {
            for (user, profile) in &r.user_profiles {
                if let Some(kind) = kinds.get(user.to_hex().as_str()) {
                    true_kind.push(names.iter().position(|n| n == kind).unwrap_or(0) + 1000 * region_index);
                    found.push(usize::from(profile.0) + 1000 * region_index);
                }
            }
        }
        let ari = prewarm_trainer::profile::evaluate::adjusted_rand_index(&true_kind, &found);
        println!("profiles vs true kinds: adjusted Rand index {ari:.3} over {} users (1 = perfect)", true_kind.len());
    }
    for r in &run.regions {
        let note = if r.borrowed_global { " (too few users: global profiles)" } else { "" };
        let q = &r.quality;
        let share = |v: Option<f64>| v.map_or_else(|| "-".to_owned(), |v| format!("{:.0} %", v * 100.0));
        let ratio = |v: Option<f64>| v.map_or_else(|| "-".to_owned(), |v| format!("{v:.2}"));
        println!("region {}: {} users, silhouette {:.2}{note}", r.model.region, r.users, r.silhouette);
        println!(
            "  {}; bot requests in the automated profile {}; cost spread {}×; stability (ARI vs the previous model) {}",
            q.k_reason,
            share(q.bot_requests_in_automated),
            ratio(q.cost_spread),
            ratio(q.stability)
        );
        for p in &r.model.profiles {
            let default = if p.id == r.model.default_profile { " [default for new users]" } else { "" };
            let purity = q.profile(p.id).map_or_else(String::new, |x| {
                format!("  {} users, purity device {:.2} content {:.2}", x.users, x.device_purity, x.content_purity)
            });
            let trained = r.profiles.get(&p.id);
            let why = trained.map_or("", |t| t.priority_reason.as_str());
            let mut gated = String::new();
            if let Some(f) = trained.and_then(|t| t.forecast.as_ref()) {
                gated = format!("\n      forecast: {} ({})", f.series.method.name(), f.series.reason);
            }
            if let Some(note) = trained.and_then(|t| t.forecast_note.as_ref()) {
                gated = format!("{gated}\n      forecast: {note}");
            }
            println!(
                "  profile {:>3}  {:<36} {:>5.1}% of users  cpu {:.2} ms ({:?})  bytes {:.0} ({:?})  {:?} ({why}){default}{purity}{gated}",
                p.id.0,
                p.label,
                p.share_of_users * 100.0,
                p.cost.cpu_ms.mean,
                p.cost.cpu_ms.source,
                p.cost.bytes.mean,
                p.cost.bytes.source,
                p.priority
            );
        }
    }
    Ok(())
}

/// Region models from a kept version number, `current`, `kv`, a models directory or an artifact file.
fn load_models(spec: &str, config: &TrainerConfig) -> Result<Vec<prewarm_shared::RegionModel>> {
    let models = DirPublisher::new(config.models_dir());
    if spec == "current" {
        return Ok(models.current()?.map(|(_, r)| r).unwrap_or_default());
    }
    if spec == "kv" {
        let kv = config
            .kv
            .as_ref()
            .context("--kv needs a [kv] section (account_id, namespace_id) and PREWARM_CF_API_TOKEN")?;
        return Ok(kv.current()?.map(|(_, r)| r).unwrap_or_default());
    }
    if let Ok(version) = spec.parse::<u32>() {
        return Ok(models.version(version)?.1);
    }
    let path = std::path::Path::new(spec);
    if path.is_dir() {
        return Ok(DirPublisher::new(path).current()?.map(|(_, r)| r).unwrap_or_default());
    }
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    Ok(vec![
        prewarm_shared::RegionModel::from_artifact(&bytes)
            .with_context(|| format!("{} is not a region model", path.display()))?,
    ])
}

fn print_diff(diff: &prewarm_trainer::publish::diff::ModelDiff) {
    let version = |v: Option<u32>| v.map_or_else(|| "-".to_owned(), |v| v.to_string());
    for region in &diff.regions {
        println!(
            "region {} ({}; version {} → {})",
            region.region,
            region.change,
            version(region.version_before),
            version(region.version_after)
        );
        for p in &region.profiles {
            match (&p.before, &p.after) {
                (Some(b), Some(a)) => {
                    let change = |x: f32, y: f32| {
                        if x > 0.0 { format!("{:+.0}%", (y / x - 1.0) * 100.0) } else { format!("{x:.1}→{y:.1}") }
                    };
                    println!(
                        "  {:>3} {:<36} moved {:.2}  users {:.1}%→{:.1}%  cpu {}  mem {}  bytes {}  forecast {}  peak {}",
                        p.id,
                        a.label,
                        p.centroid_moved.unwrap_or(f32::NAN),
                        b.share_of_users * 100.0,
                        a.share_of_users * 100.0,
                        change(b.cpu_ms, a.cpu_ms),
                        change(b.memory_mb_s, a.memory_mb_s),
                        change(b.bytes, a.bytes),
                        change(b.forecast_total, a.forecast_total),
                        change(b.forecast_peak, a.forecast_peak),
                    );
                    if b.label != a.label {
                        println!("      label was {:?}", b.label);
                    }
                }
                (None, Some(a)) => {
                    println!("  {:>3} {:<36} added ({:.1}% of users)", p.id, a.label, a.share_of_users * 100.0)
                }
                (Some(b), None) => {
                    println!("  {:>3} {:<36} removed (was {:.1}% of users)", p.id, b.label, b.share_of_users * 100.0)
                }
                (None, None) => {}
            }
        }
    }
}
