//! The Workers KV REST publisher against a local server that checks the documented request
//! shapes: paths, bearer auth, the bulk JSON with base64 values, the pointer written last.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};

use base64::Engine as _;
use prewarm_shared::artifact::{ModelBundle, ModelVersion};
use prewarm_shared::{UnixSeconds, fixtures};
use prewarm_trainer::publish::kv_rest::KvRestConfig;

#[derive(Debug, Clone)]
struct Seen {
    method: String,
    path: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

/// Answers each request with the next status from `statuses` (then 200), Cloudflare-style JSON.
fn server(statuses: Vec<u16>) -> (String, Arc<Mutex<Vec<Seen>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let base = format!("http://{}/client/v4", listener.local_addr().expect("addr"));
    let seen = Arc::new(Mutex::new(Vec::new()));
    let record = seen.clone();
    std::thread::spawn(move || {
        let mut statuses = statuses.into_iter().peekable();
        let mut values: std::collections::HashMap<String, Vec<u8>> = std::collections::HashMap::new();
        for stream in listener.incoming().flatten() {
            let mut reader = BufReader::new(stream.try_clone().expect("clone"));
            let mut line = String::new();
            let _ = reader.read_line(&mut line);
            let mut parts = line.split_whitespace();
            let (method, path) = (parts.next().unwrap_or("").to_owned(), parts.next().unwrap_or("").to_owned());
            let mut headers = Vec::new();
            loop {
                let mut h = String::new();
                if reader.read_line(&mut h).unwrap_or(0) == 0 || h.trim().is_empty() {
                    break;
                }
                if let Some((k, v)) = h.trim().split_once(':') {
                    headers.push((k.trim().to_ascii_lowercase(), v.trim().to_owned()));
                }
            }
            let length: usize =
                headers.iter().find(|(k, _)| k == "content-length").and_then(|(_, v)| v.parse().ok()).unwrap_or(0);
            let mut body = vec![0u8; length];
            let _ = reader.read_exact(&mut body);
            let mut stream = stream;
            // Reads answer from what the writes stored: raw bytes, or 404.
            if method == "GET" {
                let key = path.rsplit_once("/values/").map(|(_, k)| k.to_owned()).unwrap_or_default();
                let value = values.get(&key).cloned();
                record.lock().expect("lock").push(Seen { method, path, headers, body });
                let (status, value) = value.map_or((404, b"{\"success\":false}".to_vec()), |v| (200, v));
                let _ = write!(
                    stream,
                    "HTTP/1.1 {status} X\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    value.len()
                );
                let _ = stream.write_all(&value);
                continue;
            }
            let status = statuses.peek().copied().unwrap_or(200);
            if status == 200 {
                if path.ends_with("/bulk") {
                    let items: Vec<serde_json::Value> = serde_json::from_slice(&body).unwrap_or_default();
                    for item in items {
                        let decoded =
                            base64::engine::general_purpose::STANDARD.decode(item["value"].as_str().unwrap_or(""));
                        if let (Some(key), Ok(value)) = (item["key"].as_str(), decoded) {
                            values.insert(key.to_owned(), value);
                        }
                    }
                } else if let Some((_, key)) = path.rsplit_once("/values/") {
                    values.insert(key.to_owned(), body.clone());
                }
            }
            record.lock().expect("lock").push(Seen { method, path, headers, body });
            let status = statuses.next().unwrap_or(200);
            let reply = if status == 200 {
                r#"{"success":true,"errors":[],"messages":[],"result":null}"#
            } else {
                r#"{"success":false,"errors":[{"code":10000}]}"#
            };
            let _ = write!(
                stream,
                "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nRetry-After: 0\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{reply}",
                reply.len()
            );
        }
    });
    (base, seen)
}

#[test]
fn blobs_go_in_bulk_then_the_pointer_with_retries_on_429() {
    let models: Vec<_> = ["eu", "us"].iter().map(|r| fixtures::region_model(r)).collect();
    let (_, entries) =
        ModelBundle::encode(&models, ModelVersion(1), UnixSeconds(1_704_067_200), "eu", fixtures::region_map())
            .expect("encode");
    // The first bulk attempt is throttled; the publisher must retry it.
    let (base, seen) = server(vec![429]);
    let kv = KvRestConfig {
        account_id: "acc123".into(),
        namespace_id: "ns456".into(),
        api_token: Some("cf-token".into()),
        api_base: base,
        max_retries: 3,
    };
    kv.publish(&entries).expect("publish");
    let seen = seen.lock().expect("lock").clone();
    assert_eq!(seen.len(), 3, "{seen:?}");
    for s in &seen {
        assert_eq!(s.method, "PUT");
        assert!(s.headers.contains(&("authorization".into(), "Bearer cf-token".into())));
    }
    let bulk_path = "/client/v4/accounts/acc123/storage/kv/namespaces/ns456/bulk";
    assert_eq!(seen[0].path, bulk_path);
    assert_eq!(seen[1].path, bulk_path, "the throttled bulk write is retried");
    let bulk: Vec<serde_json::Value> = serde_json::from_slice(&seen[1].body).expect("bulk json");
    assert_eq!(bulk.len(), 2);
    for (item, entry) in bulk.iter().zip(&entries) {
        assert_eq!(item["key"], entry.key.as_str());
        assert_eq!(item["base64"], true);
        let value =
            base64::engine::general_purpose::STANDARD.decode(item["value"].as_str().expect("value")).expect("base64");
        assert_eq!(value, entry.value);
    }
    assert_eq!(seen[2].path, "/client/v4/accounts/acc123/storage/kv/namespaces/ns456/values/current");
    assert_eq!(seen[2].body, entries.last().expect("pointer").value, "the pointer goes last, as raw bytes");
}

#[test]
fn a_rejected_write_is_an_error_that_names_it() {
    let models = vec![fixtures::region_model("eu")];
    let (_, entries) =
        ModelBundle::encode(&models, ModelVersion(1), UnixSeconds(1_704_067_200), "eu", fixtures::region_map())
            .expect("encode");
    let (base, seen) = server(vec![403]);
    let kv = KvRestConfig {
        account_id: "a".into(),
        namespace_id: "n".into(),
        api_token: Some("t".into()),
        api_base: base,
        max_retries: 2,
    };
    let error = kv.publish(&entries).expect_err("403 fails").to_string();
    assert!(error.contains("bulk write") && error.contains("403"), "{error}");
    assert_eq!(seen.lock().expect("lock").len(), 1, "no pointer after a failed blob write, no retry on 403");
}

#[test]
fn what_kv_serves_reads_back_as_the_published_model() {
    let models: Vec<_> = ["eu", "us"].iter().map(|r| fixtures::region_model(r)).collect();
    let (_, entries) =
        ModelBundle::encode(&models, ModelVersion(4), UnixSeconds(1_704_067_200), "eu", fixtures::region_map())
            .expect("encode");
    let (base, seen) = server(vec![]);
    let kv = KvRestConfig {
        account_id: "acc".into(),
        namespace_id: "ns".into(),
        api_token: Some("cf-token".into()),
        api_base: base,
        max_retries: 1,
    };
    assert!(kv.current().expect("read").is_none(), "nothing published yet: no pointer");
    kv.publish(&entries).expect("publish");
    let (pointer, read) = kv.current().expect("read").expect("a model");
    assert_eq!(pointer.version, ModelVersion(4));
    assert_eq!(read, models);
    let gets: Vec<String> =
        seen.lock().expect("lock").iter().filter(|s| s.method == "GET").map(|s| s.path.clone()).collect();
    assert_eq!(gets.len(), 1 + 1 + models.len(), "the pointer (twice), then each blob once: {gets:?}");
    assert!(gets.iter().all(|p| p.starts_with("/client/v4/accounts/acc/storage/kv/namespaces/ns/values/")));
}
