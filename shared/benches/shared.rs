//! The edge's per-request costs: assignment, state update, cookie codec and model decode.
//!
//! Run with `cargo bench -p prewarm-shared`. Targets (issue 2): assignment <= 200 ns for
//! k = 16, d = 16; one region slice decodes in <= 50 us.

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use prewarm_shared::artifact::{ModelBundle, ModelPointer, ModelVersion, ProfileMeta, RegionModel};
use prewarm_shared::assign::assign_profile;
use prewarm_shared::state::{BehaviourState, CookieCheck, CookieKey, CookieKeys, DEFAULT_STATE_MAX_AGE_SECS};
use prewarm_shared::{Device, FEATURE_DIM, Observation, ProfileId, UnixSeconds, fixtures};

/// Deterministic pseudo-random numbers in [-2, 2) (no rand crate in this workspace's contract).
fn lcg(seed: &mut u64) -> f32 {
    *seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
    ((*seed >> 40) as f32 / (1u64 << 24) as f32) * 4.0 - 2.0
}

fn model_with_k(k: usize) -> RegionModel {
    let mut model = fixtures::region_model("eu");
    let template = model.profiles[0].clone();
    let mut seed = 7;
    model.centroids = (0..k * FEATURE_DIM).map(|_| lcg(&mut seed)).collect();
    model.profiles = (0..k).map(|i| ProfileMeta { id: ProfileId(i as u16 + 1), ..template.clone() }).collect();
    model.default_profile = ProfileId(1);
    model.forecast.series.clear();
    model
}

fn observation(i: u64) -> Observation {
    let rules = prewarm_shared::ClassificationRules::default();
    Observation {
        at: UnixSeconds(1_700_000_000 + i * 20),
        local_hour: 21.0,
        local_weekday: 4,
        device: Device::Mobile,
        class: rules.classify("/watch/1/seg.ts", None, Some("video/mp2t")),
        rtt_ms: Some(40),
        response_bytes: 700_000,
        response_ms: 90,
    }
}

fn benches(c: &mut Criterion) {
    let mut state = BehaviourState::new(UnixSeconds(1_700_000_000));
    for i in 0..20 {
        state.observe(&observation(i));
    }
    state.profile = Some(ProfileId(3));
    let features = state.features();
    for k in [16, 64] {
        let model = model_with_k(k);
        c.bench_function(&format!("assign k={k} d={FEATURE_DIM}"), |b| {
            b.iter(|| assign_profile(black_box(&model), black_box(&state), black_box(&features)))
        });
    }

    let o = observation(21);
    c.bench_function("state update (observe + features)", |b| {
        b.iter(|| {
            let mut s = black_box(state.clone());
            s.observe(black_box(&o));
            s.features()
        })
    });

    let keys = CookieKeys::single(CookieKey::new(1, b"bench secret".to_vec()));
    let id = "0123456789abcdef0123456789abcdef";
    let cookie = state.to_cookie(&keys.current, id);
    let check = CookieCheck { id, now: state.last_seen, max_age_secs: DEFAULT_STATE_MAX_AGE_SECS };
    c.bench_function("state cookie verify + decode", |b| {
        b.iter(|| BehaviourState::from_cookie(black_box(&cookie), &keys, &check))
    });
    c.bench_function("state cookie encode + sign", |b| b.iter(|| black_box(&state).to_cookie(&keys.current, id)));

    let names: Vec<String> = (0..50).map(|i| format!("region-{i:02}")).collect();
    let models: Vec<RegionModel> = names.iter().map(|n| fixtures::region_model(n)).collect();
    let (_, entries) =
        ModelBundle::encode(&models, ModelVersion(1), UnixSeconds(1_704_067_200), "region-00", fixtures::region_map())
            .expect("encode");
    let slice = entries[0].value.clone();
    c.bench_function(&format!("decode one region slice ({} bytes)", slice.len()), |b| {
        b.iter(|| RegionModel::from_artifact(black_box(&slice)))
    });
    // Baseline for the ratio: the same region model as JSON (what a naive artifact would be).
    let json = serde_json::to_vec(&models[0]).expect("json");
    c.bench_function(&format!("baseline: decode one region slice as JSON ({} bytes)", json.len()), |b| {
        b.iter(|| serde_json::from_slice::<RegionModel>(black_box(&json)))
    });
    c.bench_function("decode a 50-region model (pointer + all slices)", |b| {
        b.iter(|| {
            let (pointer, blobs) = entries.split_last().expect("pointer last");
            let pointer = ModelPointer::from_artifact(&pointer.value).expect("pointer");
            for blob in blobs {
                black_box(RegionModel::from_artifact(&blob.value).expect("region"));
            }
            pointer
        })
    });
}

criterion_group!(shared_benches, benches);
criterion_main!(shared_benches);
