//! Outgoing HTTP (feeds, the webhook, Workers KV): one way to build a client and one way to
//! name a URL in logs and errors.

use std::time::Duration;

/// A client that reports HTTP errors as statuses, gives up after `timeout`, and follows no
/// redirect: a redirect could take a signed delivery or an API token to another host, or from
/// https to http. A 3xx is answered like any other refusal.
pub fn agent(timeout: Duration) -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .max_redirects(0)
        .timeout_global(Some(timeout.max(Duration::from_secs(1))))
        .build()
        .into()
}

/// `url` as logs and errors show it: scheme, host and path, without credentials or a query
/// string (feeds and webhooks often carry a key there).
pub fn redacted(url: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("", url));
    let rest = rest.split(['?', '#']).next().unwrap_or("");
    let (authority, path) = rest.split_once('/').map_or((rest, ""), |(a, p)| (a, p));
    let host = authority.rsplit_once('@').map_or(authority, |(_, host)| host);
    let hidden = if url.contains('?') { "?<redacted>" } else { "" };
    let credentials = if authority.contains('@') { "<redacted>@" } else { "" };
    if scheme.is_empty() {
        format!("{credentials}{host}/{path}{hidden}")
    } else {
        format!("{scheme}://{credentials}{host}/{path}{hidden}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_in_queries_and_credentials_never_show() {
        assert_eq!(
            redacted("https://feeds.example.com/tv?api_key=s3cret&x=1"),
            "https://feeds.example.com/tv?<redacted>"
        );
        assert_eq!(redacted("https://user:pw@hooks.example.com/plan"), "https://<redacted>@hooks.example.com/plan");
        assert_eq!(redacted("http://127.0.0.1:9/x#frag"), "http://127.0.0.1:9/x");
        assert_eq!(redacted("https://example.com"), "https://example.com/");
    }
}
