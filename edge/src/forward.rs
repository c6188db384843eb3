//! Forwarding to the origin: same method, headers and streamed body, plus the profile tags the
//! origin's balancer routes by; minus prewarm's cookies and client addresses.
//!
//! The header edits run in `js/hot_path.js`, one Wasm-boundary crossing per step: Rust decides
//! (target, tags, Set-Cookie values), JavaScript moves the objects — and strips what is never
//! forwarded (prewarm's cookies, client addresses, spoofed tags) by one rule for every path,
//! the pass-through after a Wasm trap included.

use wasm_bindgen::prelude::wasm_bindgen;
use wasm_bindgen::{JsCast, JsValue};
use worker::{Result, Url, js_sys, web_sys};

/// The profile tags added to the forwarded request (header names in `js/hot_path.js`:
/// `x-prewarm-profile`, `x-prewarm-region`, `x-prewarm-model`).
#[derive(Debug, Clone)]
pub struct Tags {
    pub profile: String,
    pub region: String,
    pub model: String,
}

#[wasm_bindgen(module = "/js/hot_path.js")]
extern "C" {
    #[wasm_bindgen(js_name = requestFacts)]
    fn request_facts(request: &web_sys::Request) -> String;
    #[wasm_bindgen(js_name = requestCf)]
    fn request_cf(request: &web_sys::Request) -> String;
    #[wasm_bindgen(js_name = forwardToOrigin, catch)]
    fn forward_to_origin(
        request: &web_sys::Request,
        target: &str,
        profile: Option<&str>,
        region: Option<&str>,
        model: Option<&str>,
    ) -> std::result::Result<js_sys::Promise, JsValue>;
    /// 128 bits from `crypto.getRandomValues`, hex.
    #[wasm_bindgen(js_name = randomId)]
    pub fn random_id() -> String;
    #[wasm_bindgen(js_name = responseFacts)]
    fn response_facts(response: &web_sys::Response) -> String;
    #[wasm_bindgen(js_name = withCookies, catch)]
    fn with_cookies_js(response: &web_sys::Response, cookies: &str) -> std::result::Result<web_sys::Response, JsValue>;
}

/// What prewarm reads from a request's headers, fetched in one crossing.
#[derive(Debug, Default, Clone)]
pub struct RequestFacts {
    pub url: String,
    /// Where the path starts in `url` (`url.len()` for a bare origin); `None` when the URL is
    /// not absolute. Found once: the path is needed at several steps.
    path_at: Option<usize>,
    pub cookie: Option<String>,
    pub accept: Option<String>,
    pub user_agent: String,
    pub fault: Option<String>,
}

/// Missing or empty fields are absent.
fn fields(joined: &str) -> impl FnMut() -> Option<String> + '_ {
    let mut fields = joined.split('\n');
    move || fields.next().filter(|f| !f.is_empty()).map(str::to_owned)
}

impl RequestFacts {
    pub fn read(request: &web_sys::Request) -> Self {
        Self::parse(&request_facts(request))
    }

    /// Fields in `requestFacts`'s order.
    fn parse(joined: &str) -> Self {
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
    pub fn is_absolute(&self) -> bool {
        self.path_at.is_some()
    }

    /// The path and query ("/" for a bare origin or a URL that is not absolute).
    pub fn path_and_query(&self) -> &str {
        match self.path_at {
            Some(at) if at < self.url.len() => &self.url[at..],
            _ => "/",
        }
    }

    /// The path alone (before `?`).
    pub fn path(&self) -> &str {
        let path_and_query = self.path_and_query();
        path_and_query.split_once('?').map_or(path_and_query, |(path, _)| path)
    }
}

/// `request.cf`, as far as prewarm needs it. Every field is optional (local runs and tests may
/// lack some).
#[derive(Debug, Default, Clone)]
pub struct CfFacts {
    pub colo: Option<String>,
    pub country: Option<String>,
    pub continent: Option<String>,
    pub timezone: Option<String>,
    pub rtt_ms: Option<u32>,
}

impl CfFacts {
    pub fn read(request: &web_sys::Request) -> Self {
        Self::parse(&request_cf(request))
    }

    /// Fields in `requestCf`'s order.
    fn parse(joined: &str) -> Self {
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

/// The origin's content type and length.
pub fn response_head(response: &web_sys::Response) -> (Option<String>, u64) {
    let facts = response_facts(response);
    let (content_type, length) = facts.split_once('\n').unwrap_or((&facts, ""));
    ((!content_type.is_empty()).then(|| content_type.to_owned()), length.parse().unwrap_or(0))
}

/// Where the path starts in a request URL as the runtime serialised it (absolute, no
/// fragment): sliced, not parsed, since this runs on every request. `None` for anything else.
fn path_start(url: &str) -> Option<usize> {
    let after_scheme = url.find("://")? + 3;
    Some(url[after_scheme..].find('/').map_or(url.len(), |at| after_scheme + at))
}

/// The origin URL for an incoming request: the origin's scheme and authority, the request's path
/// and query.
pub fn target(origin: &Url, path_and_query: &str) -> String {
    format!("{}{path_and_query}", &origin[..worker::url::Position::BeforePath])
}

fn js_error(e: JsValue) -> worker::Error {
    worker::Error::from(e)
}

/// Sends the request on to the origin and returns its response (body still streaming).
pub async fn forward(req: &web_sys::Request, target: &str, tags: Option<&Tags>) -> Result<web_sys::Response> {
    let promise = forward_to_origin(
        req,
        target,
        tags.map(|t| t.profile.as_str()),
        tags.map(|t| t.region.as_str()),
        tags.map(|t| t.model.as_str()),
    )
    .map_err(js_error)?;
    let response = wasm_bindgen_futures::JsFuture::from(promise).await.map_err(js_error)?;
    response.dyn_into::<web_sys::Response>().map_err(js_error)
}

/// The origin's response with extra `Set-Cookie` headers.
pub fn with_cookies(response: &web_sys::Response, cookies: &[String]) -> Result<web_sys::Response> {
    with_cookies_js(response, &cookies.join("\n")).map_err(js_error)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_keep_the_path_and_query_and_take_the_origins_authority() {
        let origin = Url::parse("http://127.0.0.1:8787/ignored?x=1").expect("url");
        let incoming = RequestFacts::parse("https://edge.example/a/b%20c?q=1&r");
        assert_eq!(incoming.path_and_query(), "/a/b%20c?q=1&r");
        assert_eq!(incoming.path(), "/a/b%20c");
        assert_eq!(target(&origin, incoming.path_and_query()), "http://127.0.0.1:8787/a/b%20c?q=1&r");
        let bare = RequestFacts::parse("https://edge.example");
        assert_eq!((bare.is_absolute(), bare.path_and_query()), (true, "/"));
        assert!(!RequestFacts::parse("/relative").is_absolute());
    }

    #[test]
    fn the_javascript_strips_exactly_prewarms_cookies() {
        let js = include_str!("../js/hot_path.js");
        let own = format!(
            r#"export const OWN_COOKIES = ["{}", "{}"];"#,
            crate::identify::ID_COOKIE,
            crate::identify::STATE_COOKIE
        );
        assert!(js.contains(&own), "js/hot_path.js must strip {own}");
    }

    #[test]
    fn facts_split_in_order_and_empty_fields_are_absent() {
        let facts = RequestFacts::parse("https://x/a?b\npw_id=1; a=2\n\nMozilla\n");
        assert_eq!(facts.url, "https://x/a?b");
        assert_eq!(facts.cookie.as_deref(), Some("pw_id=1; a=2"));
        assert_eq!(facts.accept, None);
        assert_eq!(facts.user_agent, "Mozilla");
        assert_eq!(facts.fault, None);
        let cf = CfFacts::parse("LHR\nGB\nEU\nEurope/London\n23");
        assert_eq!(cf.colo.as_deref(), Some("LHR"));
        assert_eq!(cf.timezone.as_deref(), Some("Europe/London"));
        assert_eq!(cf.rtt_ms, Some(23));
        // Truncated or garbled input leaves the rest absent rather than failing.
        let short = CfFacts::parse("LHR\n");
        assert_eq!((short.country, short.timezone, short.rtt_ms), (None, None, None));
        assert_eq!(CfFacts::parse("\n\n\n\n-4").rtt_ms, None);
    }
}
