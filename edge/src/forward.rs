//! Forwarding to the origin: same method, headers and streamed body, plus the profile tags the
//! origin's balancer routes by; minus prewarm's cookies and client addresses.

use worker::{Fetch, Headers, Method, Request, RequestInit, RequestRedirect, Response, Result, Url};

use crate::identify::strip_own_cookies;

pub const PROFILE_HEADER: &str = "x-prewarm-profile";
pub const REGION_HEADER: &str = "x-prewarm-region";
pub const MODEL_HEADER: &str = "x-prewarm-model";

/// Request headers never forwarded: hop-by-hop ones, client addresses (prewarm forwards no
/// identity), and anything a client sends that claims to be a prewarm tag.
fn is_dropped(name: &str) -> bool {
    matches!(
        name,
        "host"
            | "connection"
            | "keep-alive"
            | "transfer-encoding"
            | "upgrade"
            | "cf-connecting-ip"
            | "cf-connecting-ipv6"
            | "x-forwarded-for"
            | "x-real-ip"
            | "true-client-ip"
            | "forwarded"
    ) || name.starts_with("x-prewarm-")
}

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
pub async fn forward(req: &Request, target: &Url, tags: Option<&Tags>) -> Result<Response> {
    let headers = Headers::new();
    for (name, value) in req.headers().entries() {
        if is_dropped(&name) {
            continue;
        }
        if name == "cookie" {
            if let Some(kept) = strip_own_cookies(&value) {
                headers.append(&name, &kept)?;
            }
            continue;
        }
        headers.append(&name, &value)?;
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
/// headers, so they are copied; the body keeps streaming.
pub fn with_cookies(response: Response, cookies: &[String]) -> Result<Response> {
    let status = response.status_code();
    let headers = Headers::new();
    for (name, value) in response.headers().entries() {
        headers.append(&name, &value)?;
    }
    for cookie in cookies {
        headers.append("set-cookie", cookie)?;
    }
    let (builder, body) = response.into_parts();
    Ok(builder.with_headers(headers).with_status(status).body(body))
}
