//! Forwarding to the origin: same method, headers and streamed body, plus the profile tags the
//! origin's balancer routes by; minus prewarm's cookies and client addresses.

use worker::{Fetch, Headers, Method, Request, RequestInit, RequestRedirect, Response, Result, Url, web_sys};

use crate::identify::strip_own_cookies;

pub const PROFILE_HEADER: &str = "x-prewarm-profile";
pub const REGION_HEADER: &str = "x-prewarm-region";
pub const MODEL_HEADER: &str = "x-prewarm-model";

/// Request headers never forwarded: hop-by-hop ones, client addresses (prewarm forwards no
/// identity), and anything a client sends that claims to be a prewarm tag or a fault trigger.
const DROPPED_HEADERS: [&str; 15] = [
    "host",
    "connection",
    "keep-alive",
    "transfer-encoding",
    "upgrade",
    "cf-connecting-ip",
    "cf-connecting-ipv6",
    "x-forwarded-for",
    "x-real-ip",
    "true-client-ip",
    "forwarded",
    PROFILE_HEADER,
    REGION_HEADER,
    MODEL_HEADER,
    "x-prewarm-fault",
];

/// The profile tags added to the forwarded request.
#[derive(Debug, Clone)]
pub struct Tags {
    pub profile: String,
    pub region: String,
    pub model: String,
}

/// The origin URL for an incoming request: the origin's scheme and authority, the request's path
/// and query.
pub fn target(origin: &Url, incoming: &Url) -> Url {
    let mut target = origin.clone();
    target.set_path(incoming.path());
    target.set_query(incoming.query());
    target
}

/// Sends the request on to the origin and returns its response (body still streaming).
/// Headers are copied inside the runtime in one call and then edited: moving every header
/// across the Wasm boundary would cost more than the rest of the request.
pub async fn forward(req: &Request, target: &Url, tags: Option<&Tags>) -> Result<Response> {
    let headers = Headers(web_sys::Headers::new_with_headers(&req.inner().headers())?);
    for name in DROPPED_HEADERS {
        headers.delete(name)?;
    }
    if let Some(cookie) = headers.get("cookie")? {
        match strip_own_cookies(&cookie) {
            Some(kept) => headers.set("cookie", &kept)?,
            None => headers.delete("cookie")?,
        }
    }
    if let Some(tags) = tags {
        headers.set(PROFILE_HEADER, &tags.profile)?;
        headers.set(REGION_HEADER, &tags.region)?;
        headers.set(MODEL_HEADER, &tags.model)?;
    }
    let method = req.method();
    let mut init = RequestInit::new();
    init.with_method(method.clone()).with_headers(headers).with_redirect(RequestRedirect::Manual);
    if !matches!(method, Method::Get | Method::Head) {
        init.with_body(req.inner().body().map(Into::into));
    }
    let outgoing = Request::new_with_init(target.as_str(), &init)?;
    Fetch::Request(outgoing).send().await
}

/// The origin's response with extra `Set-Cookie` headers. Fetched responses have immutable
/// headers, so they are copied (inside the runtime); the body keeps streaming.
pub fn with_cookies(response: Response, cookies: &[String]) -> Result<Response> {
    let status = response.status_code();
    let headers = Headers(web_sys::Headers::new_with_headers(&response.headers().0)?);
    for cookie in cookies {
        headers.append("set-cookie", cookie)?;
    }
    let (builder, body) = response.into_parts();
    Ok(builder.with_headers(headers).with_status(status).body(body))
}
