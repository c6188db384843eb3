use super::*;

const HOT_PATH: &str = include_str!("../../js/hot_path.js");

/// The string array `export const {name} = [...]` declares in `js/hot_path.js`.
fn js_fields(name: &str) -> Vec<String> {
    let start = format!("export const {name} = [");
    let Some(at) = HOT_PATH.find(&start) else { panic!("js/hot_path.js declares no `{start}...]`") };
    let rest = &HOT_PATH[at + start.len()..];
    let Some(end) = rest.find(']') else { panic!("`{name}` in js/hot_path.js is not closed") };
    rest[..end].split(',').map(|f| f.trim().trim_matches('"').to_owned()).filter(|f| !f.is_empty()).collect()
}

/// A record whose every field holds its own name.
fn named(fields: &[&str]) -> String {
    fields.join("\n")
}

#[test]
fn every_record_lists_the_same_fields_on_both_sides() {
    for (js, rust) in [
        ("REQUEST_FACTS", RequestFacts::FIELDS),
        ("CF_FACTS", CfFacts::FIELDS),
        ("RESPONSE_FACTS", ResponseFacts::FIELDS),
        ("PLAN", Plan::FIELDS),
    ] {
        assert_eq!(js_fields(js), rust, "{js} in js/hot_path.js and its Rust record disagree");
    }
}

#[test]
fn each_decoder_reads_its_fields_in_the_listed_order() {
    let request = RequestFacts::decode(&named(RequestFacts::FIELDS));
    let read = [
        request.url.as_str(),
        request.cookie.as_deref().unwrap_or(""),
        request.accept.as_deref().unwrap_or(""),
        request.user_agent.as_str(),
        request.fault.as_deref().unwrap_or(""),
    ];
    assert_eq!(read, RequestFacts::FIELDS);

    // `rtt_ms` is a number: its position is checked with one.
    let cf = CfFacts::decode(&named(CfFacts::FIELDS).replace("rtt_ms", "17"));
    let read = [cf.colo.as_deref(), cf.country.as_deref(), cf.continent.as_deref(), cf.timezone.as_deref()];
    assert_eq!(read.map(Option::unwrap_or_default), CfFacts::FIELDS[..4]);
    assert_eq!(cf.rtt_ms, Some(17));

    let response = ResponseFacts::decode(&named(ResponseFacts::FIELDS).replace("length", "42"));
    assert_eq!(response, ResponseFacts { content_type: Some("content_type".into()), length: 42 });
}

#[test]
fn the_plan_is_written_in_the_listed_order() {
    let plan = Plan { token: 7, target: "target", profile: "profile", region: "region", model: "model" };
    let written: Vec<String> = plan.encode().split('\n').map(str::to_owned).collect();
    assert_eq!(written, ["7", "target", "profile", "region", "model"]);
    assert_eq!(Plan::FIELDS[0], "token");
}

#[test]
fn targets_paths_and_bare_origins() {
    let incoming = RequestFacts::decode("https://edge.example/a/b%20c?q=1&r");
    assert_eq!(incoming.path_and_query(), "/a/b%20c?q=1&r");
    assert_eq!(incoming.path(), "/a/b%20c");
    let bare = RequestFacts::decode("https://edge.example");
    assert_eq!((bare.is_absolute(), bare.path_and_query()), (true, "/"));
    assert!(!RequestFacts::decode("/relative").is_absolute());
}

#[test]
fn empty_fields_are_absent_and_short_records_leave_the_rest_absent() {
    let facts = RequestFacts::decode("https://x/a?b\npw_id=1; a=2\n\nMozilla\n");
    assert_eq!(facts.cookie.as_deref(), Some("pw_id=1; a=2"));
    assert_eq!((facts.accept, facts.user_agent.as_str(), facts.fault), (None, "Mozilla", None));
    let short = CfFacts::decode("LHR\n");
    assert_eq!((short.country, short.timezone, short.rtt_ms), (None, None, None));
    assert_eq!(CfFacts::decode("\n\n\n\n-4").rtt_ms, None);
    assert_eq!(ResponseFacts::decode("text/html"), ResponseFacts { content_type: Some("text/html".into()), length: 0 });
    assert_eq!(ResponseFacts::decode("\nnot a number").length, 0);
}

#[test]
fn cookies_are_one_per_field() {
    assert_eq!(encode_cookies(&["a=1".into(), "b=2".into()]), "a=1\nb=2");
    assert_eq!(encode_cookies(&[]), "");
}
