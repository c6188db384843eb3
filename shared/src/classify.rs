//! Classification rules: request → route class and content class; User-Agent → device.
//!
//! The rules are data that travels inside each region model, so operators change them by
//! retraining and publishing, not by rebuilding the worker. Matching never allocates and never
//! backtracks: a pattern is a list of path segments, so cost is linear in the path length.

use serde::{Deserialize, Serialize};

/// At most this many route classes: a user's classes used are a bit mask in the state cookie.
pub const MAX_ROUTE_CLASSES: usize = 16;
/// Longest pattern accepted in a rule; longer ones are rejected when a model is decoded.
pub const MAX_PATTERN_LEN: usize = 256;

/// What kind of content a request fetched.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ContentClass {
    /// Video and audio streams and segments.
    Video,
    /// Pages and documents.
    Text,
    /// Forms, search, anything the user acts on.
    Interactive,
    /// Machine-readable API calls.
    Api,
    /// Scripts, styles, images, fonts.
    Static,
}

impl ContentClass {
    /// Every class, in feature order.
    pub const ALL: [ContentClass; 5] =
        [ContentClass::Video, ContentClass::Text, ContentClass::Interactive, ContentClass::Api, ContentClass::Static];

    /// The class's name in configs and labels.
    pub fn name(self) -> &'static str {
        match self {
            ContentClass::Video => "video",
            ContentClass::Text => "text",
            ContentClass::Interactive => "interactive",
            ContentClass::Api => "api",
            ContentClass::Static => "static",
        }
    }

    /// Parses the names used in events and configuration.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.name().eq_ignore_ascii_case(name))
    }
}

/// Index of a route class in [`ClassificationRules::route_classes`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct RouteClass(pub u8);

/// The classes of one request.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct RequestClass {
    /// The operator's route class (an index into the rules' route classes).
    pub route: RouteClass,
    /// The content class.
    pub content: ContentClass,
}

/// The kind of client, inferred from its User-Agent only.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Device {
    /// A desktop browser.
    Desktop,
    /// A phone.
    Mobile,
    /// A tablet.
    Tablet,
    /// Automation: crawlers, scripts, monitors.
    Bot,
}

impl Device {
    /// Every device, in feature order.
    pub const ALL: [Device; 4] = [Device::Desktop, Device::Mobile, Device::Tablet, Device::Bot];

    /// The device's name in configs, events and labels.
    pub fn name(self) -> &'static str {
        match self {
            Device::Desktop => "desktop",
            Device::Mobile => "mobile",
            Device::Tablet => "tablet",
            Device::Bot => "bot",
        }
    }

    /// A device from its name.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|d| d.name().eq_ignore_ascii_case(name))
    }

    /// Classifies a User-Agent header. An empty or `-` agent is automation, not a person.
    pub fn from_user_agent(user_agent: &str) -> Device {
        let ua = user_agent.trim();
        if ua.is_empty() || ua == "-" {
            return Device::Bot;
        }
        // Lowercased once, so each (lowercase) marker is one fast substring search instead of a
        // case-folding comparison at every position.
        let ua = ua.to_ascii_lowercase();
        let has = |marker: &str| ua.contains(marker);
        if BOT_MARKERS.iter().any(|m| has(m)) {
            return Device::Bot;
        }
        // "Tablet PC" is a token old Internet Explorer sent from Windows desktops.
        let tablet_word = has("tablet") && !has("tablet pc");
        if tablet_word || TABLET_MARKERS.iter().any(|m| has(m)) || (has("android") && !has("mobile")) {
            return Device::Tablet;
        }
        if MOBILE_MARKERS.iter().any(|m| has(m)) {
            return Device::Mobile;
        }
        Device::Desktop
    }
}

const BOT_MARKERS: &[&str] = &[
    "bot",
    "crawl",
    "spider",
    "slurp",
    "curl/",
    "wget",
    "python-",
    "python/",
    "java/",
    "go-http-client",
    "libwww",
    "lwp::",
    "httpclient",
    "feedfetcher",
    "scrapy",
    "headless",
    "pingdom",
    "monitor",
    "facebookexternalhit",
    "nutch",
    "ia_archiver",
    "ruby",
    "perl",
    "php/",
    "zgrab",
    "masscan",
    "nmap",
    "rss",
    "feed",
    "fetcher",
    "check_http",
    "apachebench",
    "wrk",
    "oha/",
    // Real browsers do not put a URL or a contact address in their User-Agent; crawlers do.
    "http://",
    "https://",
    "@",
];
const TABLET_MARKERS: &[&str] = &["ipad", "kindle", "silk/", "playbook", "nexus 7", "nexus 10"];
const MOBILE_MARKERS: &[&str] = &[
    "mobile",
    "iphone",
    "ipod",
    "android",
    "blackberry",
    "opera mini",
    "windows phone",
    "iemobile",
    "symbian",
    "nokia",
];

/// A path rule: the first rule whose pattern matches decides the route class, and the content
/// class too when it names one.
///
/// Pattern syntax, segment by segment: a literal segment matches itself; `*` matches any one
/// segment; a segment ending in `*` matches by prefix (`segment-*`); a final `**` matches the
/// rest of the path, including nothing.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PathRule {
    /// A path glob (`*` and `**`).
    pub pattern: String,
    /// The route class it gives.
    pub route: RouteClass,
    /// The content class it gives, if any.
    pub content: Option<ContentClass>,
}

/// A media-type prefix (`video/`, `application/json`) and the content class it means.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MimeRule {
    /// A MIME type prefix.
    pub prefix: String,
    /// The content class it gives.
    pub content: ContentClass,
}

/// A file extension (without the dot) and the content class it means.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExtensionRule {
    /// A file extension, without the dot.
    pub extension: String,
    /// The content class it gives.
    pub content: ContentClass,
}

/// Why a rule set cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[allow(missing_docs, reason = "a variant's fields are named in its message")]
pub enum RulesError {
    #[error("{count} route classes, at most {MAX_ROUTE_CLASSES} are supported")]
    /// More route classes than the state's bit mask holds.
    TooManyRouteClasses { count: usize },
    #[error("rule {rule} names route class {route}, but only {count} are defined")]
    /// A rule names a route class that is not defined.
    UnknownRouteClass { rule: usize, route: u8, count: usize },
    #[error("rule {rule}: pattern {reason}")]
    /// A path pattern is malformed.
    BadPattern { rule: usize, reason: &'static str },
}

/// How requests are classified. Precedence for the content class: the matching path rule's
/// content, then the response's Content-Type, then the path's extension, then the request's
/// Accept header, then `default_content`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClassificationRules {
    /// Names of the route classes, indexed by [`RouteClass`].
    pub route_classes: Vec<String>,
    /// Path rules, first match wins.
    pub path_rules: Vec<PathRule>,
    /// MIME rules, first match wins.
    pub mime_rules: Vec<MimeRule>,
    /// Extension rules, first match wins.
    pub extension_rules: Vec<ExtensionRule>,
    /// The route class of an unmatched path.
    pub default_route: RouteClass,
    /// The content class of an unmatched request.
    pub default_content: ContentClass,
}

impl ClassificationRules {
    /// Classifies one request. `path` may carry a query string; it is ignored.
    pub fn classify(&self, path: &str, accept: Option<&str>, content_type: Option<&str>) -> RequestClass {
        let path = path.split(['?', '#']).next().unwrap_or(path);
        let matched = self.path_rules.iter().find(|r| pattern_matches(&r.pattern, path));
        let route = matched.map_or(self.default_route, |r| r.route);
        let content = matched
            .and_then(|r| r.content)
            .or_else(|| content_type.and_then(|ct| self.content_of_media_type(ct)))
            .or_else(|| self.content_of_extension(path))
            .or_else(|| accept.and_then(|a| a.split(',').next()).and_then(|a| self.content_of_media_type(a)))
            .unwrap_or(self.default_content);
        RequestClass { route, content }
    }

    /// The name of a route class, or `"?"` for an index outside the rules.
    pub fn route_name(&self, route: RouteClass) -> &str {
        self.route_classes.get(usize::from(route.0)).map_or("?", String::as_str)
    }

    fn content_of_media_type(&self, media_type: &str) -> Option<ContentClass> {
        let media_type = media_type.trim();
        self.mime_rules
            .iter()
            .find(|r| {
                media_type.len() >= r.prefix.len()
                    && media_type.as_bytes()[..r.prefix.len()].eq_ignore_ascii_case(r.prefix.as_bytes())
            })
            .map(|r| r.content)
    }

    fn content_of_extension(&self, path: &str) -> Option<ContentClass> {
        let last = path.rsplit('/').next()?;
        let (_, extension) = last.rsplit_once('.')?;
        self.extension_rules.iter().find(|r| r.extension.eq_ignore_ascii_case(extension)).map(|r| r.content)
    }

    /// Checks what the matcher and the state cookie rely on.
    pub fn validate(&self) -> Result<(), RulesError> {
        let count = self.route_classes.len();
        if count > MAX_ROUTE_CLASSES || count == 0 {
            return Err(RulesError::TooManyRouteClasses { count });
        }
        let routes = self.path_rules.iter().map(|r| r.route).chain([self.default_route]);
        for (rule, route) in routes.enumerate() {
            if usize::from(route.0) >= count {
                return Err(RulesError::UnknownRouteClass { rule, route: route.0, count });
            }
        }
        for (rule, r) in self.path_rules.iter().enumerate() {
            let reason = if r.pattern.len() > MAX_PATTERN_LEN {
                Some("is too long")
            } else if !r.pattern.starts_with('/') {
                Some("must start with '/'")
            } else if r.pattern.split('/').rev().skip(1).any(|s| s == "**") {
                Some("may use '**' only as its last segment")
            } else {
                None
            };
            if let Some(reason) = reason {
                return Err(RulesError::BadPattern { rule, reason });
            }
        }
        Ok(())
    }
}

/// Segment-wise matching; see [`PathRule`] for the syntax.
fn pattern_matches(pattern: &str, path: &str) -> bool {
    let mut pattern_segments = pattern.split('/');
    let mut path_segments = path.split('/');
    loop {
        match (pattern_segments.next(), path_segments.next()) {
            (Some("**"), _) => return true,
            (None, None) => return true,
            (Some(p), Some(s)) => {
                let ok = match p.strip_suffix('*') {
                    Some(prefix) => s.starts_with(prefix) && !(prefix.is_empty() && s.is_empty()),
                    None => p == s,
                };
                if !ok {
                    return false;
                }
            }
            _ => return false,
        }
    }
}

impl Default for ClassificationRules {
    /// Rules that fit most web applications; operators override them in the trainer config.
    fn default() -> Self {
        use ContentClass::*;
        const PAGE: RouteClass = RouteClass(0);
        const API: RouteClass = RouteClass(1);
        const MEDIA: RouteClass = RouteClass(2);
        const ASSET: RouteClass = RouteClass(3);
        const AUTH: RouteClass = RouteClass(4);
        const SEARCH: RouteClass = RouteClass(5);
        const APP: RouteClass = RouteClass(6);
        let path = |pattern: &str, route, content| PathRule { pattern: pattern.to_owned(), route, content };
        let mime = |prefix: &str, content| MimeRule { prefix: prefix.to_owned(), content };
        let ext = |extension: &str, content| ExtensionRule { extension: extension.to_owned(), content };
        Self {
            route_classes: ["page", "api", "media", "asset", "auth", "search", "app"].map(String::from).to_vec(),
            path_rules: vec![
                path("/api/**", API, Some(Api)),
                path("/graphql", API, Some(Api)),
                path("/v*/**", API, Some(Api)),
                path("/auth/**", AUTH, Some(Interactive)),
                path("/login", AUTH, Some(Interactive)),
                path("/logout", AUTH, Some(Interactive)),
                path("/signup", AUTH, Some(Interactive)),
                path("/search*", SEARCH, None),
                path("/search/**", SEARCH, None),
                path("/watch/**", MEDIA, Some(Video)),
                path("/video/**", MEDIA, Some(Video)),
                path("/videos/**", MEDIA, Some(Video)),
                path("/stream/**", MEDIA, Some(Video)),
                path("/live/**", MEDIA, Some(Video)),
                path("/media/**", MEDIA, None),
                path("/static/**", ASSET, Some(Static)),
                path("/assets/**", ASSET, Some(Static)),
                path("/images/**", ASSET, Some(Static)),
                path("/img/**", ASSET, Some(Static)),
                path("/css/**", ASSET, Some(Static)),
                path("/js/**", ASSET, Some(Static)),
                path("/fonts/**", ASSET, Some(Static)),
                path("/favicon.ico", ASSET, Some(Static)),
                path("/robots.txt", ASSET, Some(Static)),
                path("/ws/**", APP, Some(Interactive)),
                path("/app/**", APP, Some(Interactive)),
                path("/play/**", APP, Some(Interactive)),
                path("/game/**", APP, Some(Interactive)),
                path("/cart/**", APP, Some(Interactive)),
                path("/checkout/**", APP, Some(Interactive)),
            ],
            mime_rules: vec![
                mime("video/", Video),
                mime("audio/", Video),
                mime("application/vnd.apple.mpegurl", Video),
                mime("application/x-mpegurl", Video),
                mime("application/dash+xml", Video),
                mime("application/json", Api),
                mime("application/grpc", Api),
                mime("application/xml", Api),
                mime("application/x-protobuf", Api),
                mime("text/html", Text),
                mime("text/plain", Text),
                mime("text/markdown", Text),
                mime("application/xhtml", Text),
                mime("application/pdf", Text),
                mime("text/css", Static),
                mime("text/javascript", Static),
                mime("application/javascript", Static),
                mime("image/", Static),
                mime("font/", Static),
                mime("application/wasm", Interactive),
                mime("text/event-stream", Interactive),
            ],
            extension_rules: vec![
                ext("mp4", Video),
                ext("webm", Video),
                ext("m3u8", Video),
                ext("ts", Video),
                ext("m4s", Video),
                ext("mpd", Video),
                ext("mp3", Video),
                ext("mov", Video),
                ext("css", Static),
                ext("js", Static),
                ext("png", Static),
                ext("jpg", Static),
                ext("jpeg", Static),
                ext("gif", Static),
                ext("svg", Static),
                ext("ico", Static),
                ext("webp", Static),
                ext("woff", Static),
                ext("woff2", Static),
                ext("ttf", Static),
                ext("json", Api),
                ext("xml", Api),
                ext("html", Text),
                ext("htm", Text),
                ext("txt", Text),
                ext("pdf", Text),
                ext("php", Text),
            ],
            default_route: PAGE,
            default_content: Text,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_markers_are_lowercase() {
        // from_user_agent lowercases the agent once and searches for the markers as they are.
        for marker in BOT_MARKERS.iter().chain(TABLET_MARKERS).chain(MOBILE_MARKERS) {
            assert_eq!(*marker, marker.to_ascii_lowercase(), "{marker}");
        }
        assert_eq!(Device::from_user_agent("Mozilla/5.0 (iPAD; CPU OS 17_0)"), Device::Tablet);
        assert_eq!(Device::from_user_agent("GoogleBOT/2.1"), Device::Bot);
    }

    #[test]
    fn patterns_match_segment_by_segment() {
        assert!(pattern_matches("/api/**", "/api/v1/users"));
        assert!(pattern_matches("/api/**", "/api"));
        assert!(!pattern_matches("/api/**", "/apix/users"));
        assert!(pattern_matches("/watch/*/info", "/watch/42/info"));
        assert!(!pattern_matches("/watch/*/info", "/watch/42/43/info"));
        assert!(!pattern_matches("/watch/*/info", "/watch//info"));
        assert!(pattern_matches("/search*", "/search-results"));
        assert!(pattern_matches("/graphql", "/graphql"));
        assert!(!pattern_matches("/graphql", "/graphql/x"));
    }

    #[test]
    fn default_rules_classify_common_requests() {
        let rules = ClassificationRules::default();
        rules.validate().expect("default rules are valid");
        let c = rules.classify("/api/v1/orders?page=2", Some("application/json"), None);
        assert_eq!((rules.route_name(c.route), c.content), ("api", ContentClass::Api));
        let c = rules.classify("/watch/1234/seg-7.ts", None, Some("video/mp2t"));
        assert_eq!((rules.route_name(c.route), c.content), ("media", ContentClass::Video));
        let c = rules.classify("/articles/why-profiles", Some("text/html,application/xhtml+xml"), None);
        assert_eq!((rules.route_name(c.route), c.content), ("page", ContentClass::Text));
        // The response's Content-Type beats the extension, which beats Accept.
        let c = rules.classify("/files/clip.mp4", Some("text/html"), None);
        assert_eq!(c.content, ContentClass::Video);
        let c = rules.classify("/files/clip.mp4", None, Some("TEXT/HTML; charset=utf-8"));
        assert_eq!(c.content, ContentClass::Text);
        let c = rules.classify("/images/logo.png", None, None);
        assert_eq!((rules.route_name(c.route), c.content), ("asset", ContentClass::Static));
    }

    #[test]
    fn validation_rejects_what_the_matcher_cannot_serve() {
        let mut rules = ClassificationRules::default();
        rules.path_rules[0].route = RouteClass(40);
        assert!(matches!(rules.validate(), Err(RulesError::UnknownRouteClass { .. })));
        let mut rules = ClassificationRules::default();
        rules.path_rules[0].pattern = "/a/**/b".into();
        assert!(matches!(rules.validate(), Err(RulesError::BadPattern { .. })));
        let rules = ClassificationRules {
            route_classes: (0..17).map(|i| i.to_string()).collect(),
            ..ClassificationRules::default()
        };
        assert!(matches!(rules.validate(), Err(RulesError::TooManyRouteClasses { count: 17 })));
    }

    #[test]
    fn devices_from_user_agents() {
        let cases = [
            (
                "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 Mobile/15E148",
                Device::Mobile,
            ),
            (
                "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 Chrome/120.0 Mobile Safari/537.36",
                Device::Mobile,
            ),
            ("Mozilla/5.0 (Linux; Android 13; SM-X710) AppleWebKit/537.36 Chrome/120.0 Safari/537.36", Device::Tablet),
            ("Mozilla/5.0 (iPad; CPU OS 17_0 like Mac OS X) AppleWebKit/605.1.15", Device::Tablet),
            (
                "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 Chrome/120.0 Safari/537.36",
                Device::Desktop,
            ),
            ("Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)", Device::Bot),
            ("curl/8.5.0", Device::Bot),
            ("-", Device::Bot),
            ("", Device::Bot),
        ];
        for (ua, want) in cases {
            assert_eq!(Device::from_user_agent(ua), want, "{ua}");
        }
    }
}
