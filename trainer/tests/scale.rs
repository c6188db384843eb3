//! Scale on paper, checked: the edge's own aggregation (`shared::aggregate`, the code every
//! isolate runs) fed with 1M requests/s spread over 300 colos × 4 isolates × 50 regions × 16
//! profiles for a simulated minute, at the worker's default flush settings, request by request
//! in every isolate, and the trainer's ingress that results.
//! docs/scale.md explains the figures this prints.

use prewarm_shared::aggregate::{AggregateSettings, Aggregator, Served};
use prewarm_shared::artifact::ProfileId;
use prewarm_shared::features::UnixSeconds;
use prewarm_shared::fixtures;
use prewarm_shared::signals::UserHash;

const REQUESTS_PER_SEC: u64 = 1_000_000;
const COLOS: u64 = 300;
const ISOLATES_PER_COLO: u64 = 4;
const REGIONS: u64 = 50;
const PROFILES: u16 = 16;
const SECONDS: u64 = 60;
/// Distinct visitors behind one isolate in a minute.
const USERS_PER_ISOLATE: u64 = 20_000;

#[test]
fn a_million_requests_a_second_reach_the_trainer_as_a_few_hundred_batches_a_second() {
    let settings = AggregateSettings::default();
    let models: Vec<_> = (0..REGIONS).map(|r| fixtures::region_model(&format!("region-{r}"))).collect();
    let features = fixtures::profiles()[0].0;
    let isolates = COLOS * ISOLATES_PER_COLO;
    let per_isolate = REQUESTS_PER_SEC / isolates; // 833 a second
    let start = 1_700_000_000u64;
    let (mut requests, mut batches, mut bytes, mut states, mut prewarm) = (0u64, 0u64, 0u64, 0u64, 0u64);
    for colo in 0..COLOS {
        // A colo serves one region (six colos a region); its isolates share the load.
        let model = &models[(colo % REGIONS) as usize];
        for isolate in 0..ISOLATES_PER_COLO {
            let mut counts = Aggregator::default();
            let mut batch_id = 0u64;
            for i in 0..per_isolate * SECONDS {
                let now = UnixSeconds(start + i / per_isolate);
                let visitor = (i * 7_919) % USERS_PER_ISOLATE;
                let id = (colo * ISOLATES_PER_COLO + isolate) * USERS_PER_ISOLATE + visitor;
                let user = move || UserHash::derive(b"scale-simulation-salt", &id.to_le_bytes());
                let served = Served {
                    model,
                    // Profiles of uneven size: the first ones are the busiest.
                    profile: ProfileId(1 + ((i * i) % u64::from(PROFILES * PROFILES)) as u16 / PROFILES),
                    user: &user,
                    // Lifetime requests in the visitor's state: each returns with a history.
                    requests_by_user: (1 + (id * 31 + i / USERS_PER_ISOLATE) % 64) as u16,
                    features: &features,
                    bytes: 20_000,
                    now,
                };
                requests += 1;
                if counts.record(&settings, &served) {
                    batch_id += 1;
                    let batch = counts.take(now, batch_id);
                    batches += 1;
                    states += batch.states.len() as u64;
                    prewarm += batch.prewarm.len() as u64;
                    bytes += batch.to_json().len() as u64;
                }
            }
        }
    }
    let per_sec = |n: u64| n as f64 / SECONDS as f64;
    let ratio = requests as f64 / batches.max(1) as f64;
    println!(
        "{} requests/s over {COLOS} colos × {ISOLATES_PER_COLO} isolates × {REGIONS} regions × {PROFILES} profiles, \
         flush every {} s or {} items: trainer ingress {:.0} batches/s, {:.2} MB/s of JSON ({:.0} sampled states/s, \
         {:.1} prewarm requests/s); {ratio:.0} requests per batch",
        REQUESTS_PER_SEC,
        settings.flush_secs,
        settings.batch_max,
        per_sec(batches),
        per_sec(bytes) / 1e6,
        per_sec(states),
        per_sec(prewarm),
    );
    assert_eq!(requests, per_isolate * SECONDS * isolates);
    assert!(ratio >= 200.0, "{ratio:.0} requests per batch, below the 200:1 the design needs");
    // The isolate's flush rule bounds ingress whatever the traffic: one batch per flush
    // interval per isolate unless a batch fills first.
    assert!(per_sec(batches) <= isolates as f64 / settings.flush_secs as f64 * 1.5, "{} batches/s", per_sec(batches));
}
