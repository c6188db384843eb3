//! The JavaScript host: the `extern` block of `js/hot_path.js` and the records that cross the
//! Wasm boundary, each one struct with its field list beside its codec.
//!
//! A record is one string of "\n"-separated fields (no field can hold a newline: header values,
//! URLs and tags cannot), because one string crossing costs less than one crossing per field.
//! Each record's field order is declared twice — `FIELDS` here, an `export const` array in
//! `js/hot_path.js` next to the function that writes or reads it — and the tests below pin
//! the two lists to each other and each codec to its list, so an edit to one side that the
//! other does not follow fails the build's tests instead of mislabelling a request's fields.

use wasm_bindgen::JsValue;
use wasm_bindgen::prelude::wasm_bindgen;
use worker::{js_sys, web_sys};

#[wasm_bindgen(module = "/js/hot_path.js")]
extern "C" {
    #[wasm_bindgen(js_name = requestFacts)]
    fn request_facts(request: &web_sys::Request) -> String;
    #[wasm_bindgen(js_name = requestCf)]
    fn request_cf(request: &web_sys::Request) -> String;
    /// Remembered until the request settles, so that a trap after it returns the origin's answer.
    #[wasm_bindgen(js_name = forwardRemembered, catch)]
    pub fn forward_to_origin(
        request: &web_sys::Request,
        target: &str,
        profile: Option<&str>,
        region: Option<&str>,
        model: Option<&str>,
    ) -> Result<js_sys::Promise, JsValue>;
    /// 128 bits from `crypto.getRandomValues`, hex.
    #[wasm_bindgen(js_name = randomId)]
    pub fn random_id() -> String;
    #[wasm_bindgen(js_name = responseFacts)]
    fn response_facts(response: &web_sys::Response) -> String;
    #[wasm_bindgen(js_name = withCookies, catch)]
    pub fn with_cookies(response: &web_sys::Response, cookies: &str) -> Result<web_sys::Response, JsValue>;
}

/// Missing or empty fields are absent.
fn fields(joined: &str) -> impl FnMut() -> Option<String> + '_ {
    let mut fields = joined.split('\n');
    move || fields.next().filter(|f| !f.is_empty()).map(str::to_owned)
}

/// What prewarm reads from a request's headers, fetched in one crossing (`requestFacts`).
#[derive(Debug, Default, Clone)]
pub(crate) struct RequestFacts {
    pub url: String,
    /// Where the path starts in `url` (`url.len()` for a bare origin); `None` when the URL is
    /// not absolute. Found once: the path is needed at several steps.
    path_at: Option<usize>,
    pub cookie: Option<String>,
    pub accept: Option<String>,
    pub user_agent: String,
    pub fault: Option<String>,
}

impl RequestFacts {
    /// The record's fields, in order (`REQUEST_FACTS` in `js/hot_path.js`).
    #[allow(dead_code, reason = "read by the tests that pin it to js/hot_path.js")]
    pub(crate) const FIELDS: &[&str] = &["url", "cookie", "accept", "user_agent", "fault"];

    pub(crate) fn read(request: &web_sys::Request) -> Self {
        Self::decode(&request_facts(request))
    }

    fn decode(joined: &str) -> Self {
        let mut next = fields(joined);
        let url = next().unwrap_or_default();
        Self {
            path_at: path_start(&url),
            url,
            cookie: next(),
            accept: next(),
            user_agent: next().unwrap_or_default(),
            fault: next(),
        }
    }

    /// The request URL was absolute (the runtime always gives one).
    pub(crate) fn is_absolute(&self) -> bool {
        self.path_at.is_some()
    }

    /// The path and query ("/" for a bare origin or a URL that is not absolute).
    pub(crate) fn path_and_query(&self) -> &str {
        match self.path_at {
            Some(at) if at < self.url.len() => &self.url[at..],
            _ => "/",
        }
    }

    /// The path alone (before `?`).
    pub(crate) fn path(&self) -> &str {
        let path_and_query = self.path_and_query();
        path_and_query.split_once('?').map_or(path_and_query, |(path, _)| path)
    }
}

/// Where the path starts in a request URL as the runtime serialised it (absolute, no
/// fragment): sliced, not parsed, since this runs on every request. `None` for anything else.
fn path_start(url: &str) -> Option<usize> {
    let after_scheme = url.find("://")? + 3;
    Some(url[after_scheme..].find('/').map_or(url.len(), |at| after_scheme + at))
}

/// `request.cf`, as far as prewarm needs it (`requestCf`). Every field is optional (local runs
/// and tests may lack some).
#[derive(Debug, Default, Clone)]
pub(crate) struct CfFacts {
    pub colo: Option<String>,
    pub country: Option<String>,
    pub continent: Option<String>,
    pub timezone: Option<String>,
    pub rtt_ms: Option<u32>,
}

impl CfFacts {
    /// The record's fields, in order (`CF_FACTS` in `js/hot_path.js`).
    #[allow(dead_code, reason = "read by the tests that pin it to js/hot_path.js")]
    pub(crate) const FIELDS: &[&str] = &["colo", "country", "continent", "timezone", "rtt_ms"];

    pub(crate) fn read(request: &web_sys::Request) -> Self {
        Self::decode(&request_cf(request))
    }

    fn decode(joined: &str) -> Self {
        let mut next = fields(joined);
        Self {
            colo: next(),
            country: next(),
            continent: next(),
            timezone: next(),
            rtt_ms: next().and_then(|v| v.parse::<f64>().ok()).filter(|v| *v >= 0.0).map(|v| v as u32),
        }
    }
}

/// The origin response's head as far as prewarm needs it (`responseFacts`).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct ResponseFacts {
    pub content_type: Option<String>,
    /// `Content-Length`, 0 when absent or not a number.
    pub length: u64,
}

impl ResponseFacts {
    /// The record's fields, in order (`RESPONSE_FACTS` in `js/hot_path.js`).
    #[allow(dead_code, reason = "read by the tests that pin it to js/hot_path.js")]
    pub(crate) const FIELDS: &[&str] = &["content_type", "length"];

    pub(crate) fn read(response: &web_sys::Response) -> Self {
        Self::decode(&response_facts(response))
    }

    fn decode(joined: &str) -> Self {
        let mut next = fields(joined);
        Self { content_type: next(), length: next().and_then(|v| v.parse().ok()).unwrap_or(0) }
    }
}

/// What `edge/worker.mjs` needs to forward a request prepared synchronously (`decodePlan`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Plan<'a> {
    /// The key `prewarm_complete` / `prewarm_abandon` find the prepared request by.
    pub token: u32,
    pub target: &'a str,
    pub profile: &'a str,
    pub region: &'a str,
    pub model: &'a str,
}

impl Plan<'_> {
    /// The record's fields, in order (`PLAN` in `js/hot_path.js`).
    #[allow(dead_code, reason = "read by the tests that pin it to js/hot_path.js")]
    pub(crate) const FIELDS: &'static [&'static str] = &["token", "target", "profile", "region", "model"];

    pub(crate) fn encode(&self) -> String {
        format!("{}\n{}\n{}\n{}\n{}", self.token, self.target, self.profile, self.region, self.model)
    }
}

/// `Set-Cookie` values for `withCookies`: one per field, as many as there are.
pub(crate) fn encode_cookies(cookies: &[String]) -> String {
    cookies.join("\n")
}

#[cfg(test)]
mod tests;
