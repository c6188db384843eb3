//! The demo's live traffic: virtual visitors of the four kinds, each with its cookie jar,
//! requesting through the worker at a steady rate, and the totals the summary reports.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use prewarm_tests::request_with_head;

/// A kind of live visitor the driver plays.
pub(super) struct Visitor {
    pub(super) kind: &'static str,
    user_agent: &'static str,
    path: &'static str,
    accept: &'static str,
}

pub(super) const VISITORS: [Visitor; 4] = [
    Visitor {
        kind: "mobile video viewer",
        user_agent: "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 Mobile/15E148",
        path: "/watch/{n}/segment.ts",
        accept: "*/*",
    },
    Visitor {
        kind: "desktop API client",
        user_agent: "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 Chrome/120.0 Safari/537.36",
        path: "/api/v1/orders/{n}",
        accept: "application/json",
    },
    Visitor {
        kind: "tablet reader",
        user_agent: "Mozilla/5.0 (iPad; CPU OS 17_0 like Mac OS X) AppleWebKit/605.1.15",
        path: "/articles/{n}",
        accept: "text/html",
    },
    Visitor {
        kind: "crawler",
        user_agent: "Mozilla/5.0 (compatible; Googlebot/2.1)",
        path: "/articles/{n}",
        accept: "text/html",
    },
];

/// Totals the live driver keeps.
#[derive(Default)]
pub(super) struct Tally {
    pub(super) sent: AtomicU64,
    pub(super) ok: AtomicU64,
    /// The first failure, for the summary.
    pub(super) first_error: std::sync::Mutex<Option<String>>,
}

impl Tally {
    fn fail(&self, what: String) {
        if let Ok(mut first) = self.first_error.lock() {
            first.get_or_insert(what);
        }
    }
}

/// One virtual visitor: a cookie jar and a request every `interval_ms` (which the driver may
/// change while it runs), until `stop`.
pub(super) fn visit(
    worker: SocketAddr,
    visitor: &'static Visitor,
    id: u64,
    interval_ms: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    tally: Arc<Tally>,
) {
    let mut jar: HashMap<String, String> = HashMap::new();
    let mut n = id * 1000;
    while !stop.load(Ordering::Relaxed) {
        n += 1;
        let path = visitor.path.replace("{n}", &(n % 500).to_string());
        let cookie = jar.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join("; ");
        let mut headers = vec![("User-Agent", visitor.user_agent), ("Accept", visitor.accept)];
        if !cookie.is_empty() {
            headers.push(("Cookie", &cookie));
        }
        tally.sent.fetch_add(1, Ordering::Relaxed);
        let started = Instant::now();
        let outcome = request_with_head(worker, "GET", &path, &headers, b"");
        if let Err(e) = &outcome {
            tally.fail(format!("GET {path}: {e} after {} ms", started.elapsed().as_millis()));
        }
        if let Ok((status, head, _)) = outcome {
            if status == 200 {
                tally.ok.fetch_add(1, Ordering::Relaxed);
            } else {
                tally.fail(format!("GET {path}: status {status}"));
            }
            for line in head.lines() {
                if let Some(value) = line.strip_prefix("set-cookie: ").or_else(|| line.strip_prefix("Set-Cookie: "))
                    && let Some((name, rest)) = value.split_once('=')
                    && name.starts_with("pw_")
                {
                    jar.insert(name.to_owned(), rest.split(';').next().unwrap_or("").to_owned());
                }
            }
        }
        // A request every interval, however long the last one took.
        let period = Duration::from_millis(interval_ms.load(Ordering::Relaxed));
        std::thread::sleep(period.saturating_sub(started.elapsed()));
    }
}

/// The profile the worker last tagged each kind of visitor with, from the request heads the
/// origin saw (its `User-Agent` and `x-prewarm-profile`).
pub(super) fn profiles_by_kind(heads: &[String]) -> HashMap<&'static str, u64> {
    let mut found = HashMap::new();
    for head in heads {
        let header = |name: &str| {
            head.lines().find_map(|l| {
                let (n, v) = l.split_once(':')?;
                n.trim().eq_ignore_ascii_case(name).then(|| v.trim().to_owned())
            })
        };
        let (Some(agent), Some(profile)) = (header("user-agent"), header("x-prewarm-profile")) else { continue };
        let Ok(profile) = profile.parse::<u64>() else { continue };
        if let Some(visitor) = VISITORS.iter().find(|v| v.user_agent == agent) {
            found.insert(visitor.kind, profile);
        }
    }
    found
}

/// Milliseconds between one visitor's requests for `per_sec` requests a second among
/// `visitors` (between 0.2 s and 20 s).
pub(super) fn interval_ms(per_sec: f64, visitors: usize) -> u64 {
    let each = per_sec / visitors.max(1) as f64;
    if each > 0.0 { (1000.0 / each).clamp(200.0, 20_000.0) as u64 } else { 20_000 }
}
