//! Artifact envelope, region blobs, pointer and the committed golden fixtures.

mod common;

use prewarm_shared::artifact::{
    ARTIFACT_SCHEMA_VERSION, ArtifactError, ArtifactKind, ContentHash, Envelope, HEADER_LEN, ModelBundle, ModelPointer,
    ModelVersion, POINTER_KEY, RegionModel, verify_blob,
};
use prewarm_shared::fixtures;
use prewarm_shared::state::{BehaviourState, CookieKey, CookieKeys};
use prewarm_shared::{ProfileId, UnixSeconds};

const CREATED_AT: UnixSeconds = UnixSeconds(1_704_067_200);

fn bundle(regions: &[&str]) -> (ModelPointer, Vec<prewarm_shared::artifact::KvEntry>) {
    let models: Vec<RegionModel> = regions.iter().map(|r| fixtures::region_model(r)).collect();
    ModelBundle::encode(&models, ModelVersion(1), CREATED_AT, regions[0], fixtures::region_map()).expect("encode")
}

#[test]
fn region_model_round_trips() {
    let model = fixtures::region_model("eu");
    let bytes = model.to_artifact(CREATED_AT).expect("encode");
    assert_eq!(&bytes[..4], b"PWRM");
    let back = RegionModel::from_artifact(&bytes).expect("decode");
    assert_eq!(back, model);
    let (envelope, _) = Envelope::open(&bytes).expect("open");
    assert_eq!(envelope.kind, ArtifactKind::Region);
    assert_eq!(envelope.created_at, CREATED_AT);
}

#[test]
fn bundle_writes_blobs_first_and_pointer_last() {
    let (pointer, entries) = bundle(&["eu", "us", "apac"]);
    assert_eq!(entries.len(), 4);
    assert_eq!(entries.last().map(|e| e.key.as_str()), Some(POINTER_KEY));
    for (entry, listed) in entries.iter().zip(&pointer.regions) {
        assert_eq!(entry.key, format!("model/{}", listed.hash.to_hex()));
        verify_blob(listed, &entry.value).expect("blob matches pointer");
        assert_eq!(RegionModel::from_artifact(&entry.value).expect("decode").region, listed.region);
    }
    let decoded = ModelPointer::from_artifact(&entries[3].value).expect("pointer decodes");
    assert_eq!(decoded, pointer);
    assert_eq!(decoded.region_for(Some("LHR"), Some("US"), None), "eu");
    assert_eq!(decoded.region_for(None, Some("US"), None), "us");
    assert_eq!(decoded.region_for(None, Some("BR"), Some("AS")), "apac");
    assert_eq!(decoded.region_for(None, Some("BR"), Some("SA")), "eu");
    // A blob from another region is caught by its hash.
    assert!(matches!(verify_blob(&pointer.regions[0], &entries[1].value), Err(ArtifactError::HashMismatch { .. })));
}

#[test]
fn every_decode_error_is_typed() {
    let good = fixtures::region_model("eu").to_artifact(CREATED_AT).expect("encode");

    let mut bad_magic = good.clone();
    bad_magic[0] = b'X';
    assert!(matches!(RegionModel::from_artifact(&bad_magic), Err(ArtifactError::BadMagic { .. })));

    let mut unknown_schema = good.clone();
    unknown_schema[4..6].copy_from_slice(&(ARTIFACT_SCHEMA_VERSION + 1).to_le_bytes());
    assert_eq!(
        RegionModel::from_artifact(&unknown_schema),
        Err(ArtifactError::UnknownSchema { found: ARTIFACT_SCHEMA_VERSION + 1 })
    );

    let mut flipped = good.clone();
    let last = flipped.len() - 1;
    flipped[last] ^= 0x40;
    assert!(matches!(RegionModel::from_artifact(&flipped), Err(ArtifactError::HashMismatch { .. })));

    for cut in [0, 3, HEADER_LEN - 1, HEADER_LEN, good.len() - 1] {
        let result = RegionModel::from_artifact(&good[..cut]);
        assert!(
            matches!(result, Err(ArtifactError::Truncated { .. }) | Err(ArtifactError::LengthMismatch { .. })),
            "cut at {cut}: {result:?}"
        );
    }

    let pointer_bytes = bundle(&["eu"]).1.pop().expect("pointer").value;
    assert_eq!(
        RegionModel::from_artifact(&pointer_bytes),
        Err(ArtifactError::WrongKind { expected: ArtifactKind::Region, found: ArtifactKind::Pointer })
    );

    let garbage = Envelope::seal(ArtifactKind::Region, ModelVersion(1), CREATED_AT, b"\xff\xff\xff\xff\xff");
    assert!(matches!(RegionModel::from_artifact(&garbage), Err(ArtifactError::Payload(_))));

    // Well-formed postcard that breaks an invariant the edge indexes by.
    let mut broken = fixtures::region_model("eu");
    broken.centroids.pop();
    let payload = postcard::to_allocvec(&broken).expect("postcard");
    let sealed = Envelope::seal(ArtifactKind::Region, ModelVersion(1), CREATED_AT, &payload);
    assert!(matches!(RegionModel::from_artifact(&sealed), Err(ArtifactError::Invalid(_))));
    let mut broken = fixtures::region_model("eu");
    broken.default_profile = ProfileId(77);
    assert!(matches!(broken.to_artifact(CREATED_AT), Err(ArtifactError::Invalid(_))));
}

#[test]
fn json_view_is_readable() {
    let model = fixtures::region_model("eu");
    let json = model.to_json();
    assert_eq!(json["region"], "eu");
    assert_eq!(json["profiles"][0]["label"], "mobile · video · evening");
    assert_eq!(json["profiles"][1]["priority"], "critical");
    assert_eq!(json["schema"]["names"][3], "content.video");
    let (pointer, _) = bundle(&["eu", "us"]);
    let json = pointer.to_json();
    assert_eq!(json["regions"][1]["hash"].as_str().map(str::len), Some(64));
}

#[test]
fn fifty_region_model_decodes_one_slice_at_a_time() {
    let names: Vec<String> = (0..50).map(|i| format!("region-{i:02}")).collect();
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let (pointer, entries) = bundle(&refs);
    let entry = pointer.entry("region-37").expect("listed");
    let blob = entries.iter().find(|e| e.key == entry.hash.kv_key()).expect("stored");
    assert_eq!(RegionModel::from_artifact(&blob.value).expect("decode").region, "region-37");
}

// Golden fixtures: committed bytes that deployed workers can read. If one of these fails, the
// change breaks compatibility: bump the schema version, then regenerate with PREWARM_BLESS=1.

fn golden(name: &str, fresh: &[u8]) -> Vec<u8> {
    let path = common::fixture(name);
    if common::blessing() {
        std::fs::write(&path, fresh).expect("write golden");
    }
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn golden_region_blob_decodes_and_encoding_is_stable() {
    let model = fixtures::region_model("eu");
    let fresh = model.to_artifact(CREATED_AT).expect("encode");
    let committed = golden("region-eu.pwrm", &fresh);
    let decoded = RegionModel::from_artifact(&committed).expect("golden decodes");
    assert_eq!(decoded, model);
    assert_eq!(committed, fresh, "encoding changed: existing artifacts and workers disagree");
}

#[test]
fn golden_pointer_decodes() {
    let (pointer, entries) = bundle(&["eu", "us", "apac"]);
    let fresh = &entries.last().expect("pointer").value;
    let committed = golden("pointer.pwrm", fresh);
    assert_eq!(ModelPointer::from_artifact(&committed).expect("golden decodes"), pointer);
    assert_eq!(&committed, fresh);
    assert_eq!(
        pointer.regions[0].hash,
        ContentHash::of(&golden("region-eu.pwrm", &entries[0].value)),
        "the pointer names the golden region blob"
    );
}

#[test]
fn golden_state_cookie_decodes() {
    let key = CookieKey::new(1, b"golden-fixture-secret".to_vec());
    let mut state = BehaviourState::new(UnixSeconds(1_704_067_200));
    let model = fixtures::region_model("eu");
    for i in 0..5u64 {
        let class = model.rules.classify("/watch/7/seg.ts", None, Some("video/mp2t"));
        state.observe(&prewarm_shared::Observation {
            at: UnixSeconds(1_704_067_200 + 40 * i),
            local_hour: 21.0,
            local_weekday: 4,
            device: prewarm_shared::Device::Mobile,
            class,
            rtt_ms: Some(45),
            response_bytes: 1_000_000,
            response_ms: 250,
        });
    }
    state.profile = Some(ProfileId(1));
    state.model_version = ModelVersion(1);
    state.geo = Some(prewarm_shared::GeoMemo::new(Some("FRA"), Some("DE"), Some("EU"), 60, UnixSeconds(1_704_067_360)));
    let id = "0123456789abcdef0123456789abcdef";
    let fresh = state.to_cookie(&key, id);
    let committed = String::from_utf8(golden("state-cookie.txt", fresh.as_bytes())).expect("utf8");
    let check = prewarm_shared::state::CookieCheck {
        id,
        now: UnixSeconds(1_704_067_400),
        max_age_secs: prewarm_shared::state::DEFAULT_STATE_MAX_AGE_SECS,
    };
    let decoded =
        BehaviourState::from_cookie(committed.trim(), &CookieKeys::single(key), &check).expect("golden decodes");
    assert_eq!(decoded.requests, 5);
    assert_eq!(decoded.profile, Some(ProfileId(1)));
    assert_eq!(decoded.geo, state.geo);
    assert_eq!(committed.trim(), fresh);
}
