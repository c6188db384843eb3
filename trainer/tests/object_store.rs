//! The object_store target against a local S3-compatible server: SigV4-signed requests to
//! path-style keys, blobs before the version's pointer before `current`, blobs already there
//! not sent again, and what was written read back. Needs `--features object-store`.
#![cfg(feature = "object-store")]

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};

use prewarm_shared::UnixSeconds;
use prewarm_shared::artifact::{ModelBundle, ModelVersion};
use prewarm_shared::fixtures;
use prewarm_trainer::publish::ObjectStoreConfig;
use prewarm_trainer::publish::object_store::ObjectStorePublisher;

#[derive(Debug, Clone)]
struct Seen {
    method: String,
    path: String,
    signed: bool,
}

/// A minimal S3: HEAD, GET and PUT on path-style keys, kept in memory.
fn s3() -> (String, Arc<Mutex<Vec<Seen>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let endpoint = format!("http://{}", listener.local_addr().expect("addr"));
    let seen = Arc::new(Mutex::new(Vec::new()));
    let record = seen.clone();
    std::thread::spawn(move || {
        let mut objects: HashMap<String, Vec<u8>> = HashMap::new();
        for stream in listener.incoming().flatten() {
            let mut reader = BufReader::new(stream);
            let mut line = String::new();
            if reader.read_line(&mut line).unwrap_or(0) == 0 {
                continue;
            }
            let mut parts = line.split_whitespace();
            let (method, path) = (parts.next().unwrap_or("").to_owned(), parts.next().unwrap_or("").to_owned());
            let mut headers = HashMap::new();
            let mut header = String::new();
            while reader.read_line(&mut header).unwrap_or(0) > 0 && !header.trim().is_empty() {
                if let Some((k, v)) = header.trim().split_once(':') {
                    headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_owned());
                }
                header.clear();
            }
            let length: usize = headers.get("content-length").and_then(|v| v.parse().ok()).unwrap_or(0);
            let mut body = vec![0; length];
            let _ = reader.read_exact(&mut body);
            let signed = headers.get("authorization").is_some_and(|a| {
                a.starts_with("AWS4-HMAC-SHA256 Credential=AKIDPREWARMTEST/") && a.contains("Signature=")
            }) && headers.contains_key("x-amz-date")
                && headers.contains_key("x-amz-content-sha256");
            record.lock().expect("lock").push(Seen { method: method.clone(), path: path.clone(), signed });
            let key = path.split('?').next().unwrap_or("").to_owned();
            let meta = |len: usize| {
                format!("Content-Length: {len}\r\nETag: \"{len}\"\r\nLast-Modified: Sat, 28 Nov 2026 00:00:00 GMT\r\n")
            };
            let (status, head, payload): (&str, String, Vec<u8>) = match (method.as_str(), objects.get(&key)) {
                ("PUT", _) => {
                    objects.insert(key, body);
                    ("200 OK", "ETag: \"1\"\r\nContent-Length: 0\r\n".into(), Vec::new())
                }
                ("HEAD", Some(v)) => ("200 OK", meta(v.len()), Vec::new()),
                ("GET", Some(v)) => ("200 OK", meta(v.len()), v.clone()),
                _ => ("404 Not Found", "Content-Length: 0\r\n".into(), Vec::new()),
            };
            let mut stream = reader.into_inner();
            let _ = write!(stream, "HTTP/1.1 {status}\r\n{head}Connection: close\r\n\r\n");
            let _ = stream.write_all(&payload);
        }
    });
    (endpoint, seen)
}

#[test]
fn versions_are_archived_to_an_s3_compatible_store_pointer_last() {
    let (endpoint, seen) = s3();
    let config = ObjectStoreConfig {
        url: "s3://models/prewarm".into(),
        endpoint: Some(endpoint),
        region: "auto".into(),
        allow_http: true,
    };
    let credentials = vec![
        ("aws_access_key_id".to_owned(), "AKIDPREWARMTEST".to_owned()),
        ("aws_secret_access_key".to_owned(), "secret-key-for-tests".to_owned()),
    ];
    let store = ObjectStorePublisher::with_options(&config, credentials).expect("store");
    let models: Vec<_> = ["eu", "us"].iter().map(|r| fixtures::region_model(r)).collect();
    let (_, entries) =
        ModelBundle::encode(&models, ModelVersion(3), UnixSeconds(1_704_067_200), "eu", fixtures::region_map())
            .expect("encode");
    store.publish(&entries).expect("publish");

    let requests = seen.lock().expect("lock").clone();
    assert!(requests.iter().all(|r| r.signed), "every request SigV4-signed: {requests:?}");
    let puts: Vec<&str> = requests.iter().filter(|r| r.method == "PUT").map(|r| r.path.as_str()).collect();
    let blobs = entries.len() - 1;
    assert_eq!(puts.len(), blobs + 2, "{puts:?}");
    assert!(puts[..blobs].iter().all(|p| p.starts_with("/models/prewarm/model/")), "{puts:?}");
    assert_eq!(puts[blobs..], ["/models/prewarm/versions/3", "/models/prewarm/current"]);

    // Read back: the pointer and every blob, byte for byte.
    for entry in &entries {
        assert_eq!(store.get(&entry.key).expect("get").as_deref(), Some(entry.value.as_slice()), "{}", entry.key);
    }
    assert_eq!(store.get("versions/3").expect("get"), store.get("current").expect("get"));
    assert_eq!(store.get("model/missing").expect("a miss is not an error"), None);

    // Again: content-addressed blobs are not sent twice; the pointers are.
    seen.lock().expect("lock").clear();
    store.publish(&entries).expect("publish again");
    let again: Vec<String> =
        seen.lock().expect("lock").iter().filter(|r| r.method == "PUT").map(|r| r.path.clone()).collect();
    assert_eq!(again, ["/models/prewarm/versions/3", "/models/prewarm/current"]);
}

#[test]
fn a_bad_url_or_an_unreachable_store_is_a_named_error() {
    let bad = ObjectStoreConfig { url: "not a url".into(), endpoint: None, region: "auto".into(), allow_http: false };
    let err = ObjectStorePublisher::with_options(&bad, vec![]).expect_err("bad url");
    assert!(err.to_string().contains("not a url"), "{err}");
    let closed = TcpListener::bind("127.0.0.1:0").expect("bind");
    let endpoint = format!("http://{}", closed.local_addr().expect("addr"));
    drop(closed);
    let config = ObjectStoreConfig {
        url: "s3://models".into(),
        endpoint: Some(endpoint),
        region: "auto".into(),
        allow_http: true,
    };
    let credentials = vec![
        ("aws_access_key_id".to_owned(), "AKIDPREWARMTEST".to_owned()),
        ("aws_secret_access_key".to_owned(), "secret".to_owned()),
        ("aws_retry_max_retries".to_owned(), "0".to_owned()),
    ];
    let store = ObjectStorePublisher::with_options(&config, credentials).expect("store");
    let (_, entries) = ModelBundle::encode(
        &[fixtures::region_model("eu")],
        ModelVersion(1),
        UnixSeconds(1_704_067_200),
        "eu",
        fixtures::region_map(),
    )
    .expect("encode");
    let err = store.publish(&entries).expect_err("nothing listens");
    assert!(err.to_string().contains("object store"), "{err}");
}
