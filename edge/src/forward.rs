//! Forwarding to the origin: same method, headers and streamed body, plus the profile tags the
//! origin's balancer routes by; minus prewarm's cookies and client addresses.
//!
//! The header edits run in `js/hot_path.js` ([`crate::host`]), one Wasm-boundary crossing per
//! step: Rust decides (target, tags, Set-Cookie values), JavaScript moves the objects — and
//! strips what is never forwarded (prewarm's cookies, client addresses, spoofed tags) by one
//! rule for every path, the pass-through after a Wasm trap included.

use wasm_bindgen::{JsCast, JsValue};
use worker::{Result, Url, web_sys};

use crate::host;

/// The profile tags added to the forwarded request (header names in `js/hot_path.js`:
/// `x-prewarm-profile`, `x-prewarm-region`, `x-prewarm-model`).
#[derive(Debug, Clone)]
pub(crate) struct Tags {
    pub profile: String,
    pub region: String,
    pub model: String,
}

/// The origin URL for an incoming request: the origin's scheme and authority, the request's path
/// and query.
pub(crate) fn target(origin: &Url, path_and_query: &str) -> String {
    format!("{}{path_and_query}", &origin[..worker::url::Position::BeforePath])
}

fn js_error(e: JsValue) -> worker::Error {
    worker::Error::from(e)
}

/// Sends the request on to the origin and returns its response (body still streaming).
pub(crate) async fn forward(req: &web_sys::Request, target: &str, tags: Option<&Tags>) -> Result<web_sys::Response> {
    let promise = host::forward_to_origin(
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
pub(crate) fn with_cookies(response: &web_sys::Response, cookies: &[String]) -> Result<web_sys::Response> {
    host::with_cookies(response, &host::encode_cookies(cookies)).map_err(js_error)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_keep_the_path_and_query_and_take_the_origins_authority() {
        let origin = Url::parse("http://127.0.0.1:8787/ignored?x=1").expect("url");
        assert_eq!(target(&origin, "/a/b%20c?q=1&r"), "http://127.0.0.1:8787/a/b%20c?q=1&r");
        assert_eq!(target(&origin, "/"), "http://127.0.0.1:8787/");
    }
}
