//! Where a profile's priority class comes from: the operator's rules (route classes, content
//! mix or label), then the value its requests carry, then whether it is mostly bots. Each
//! decision keeps its reason, so `prewarm train` and `prewarm inspect` can say why.

use prewarm_shared::artifact::PriorityClass;
use prewarm_shared::classify::ContentClass;
use serde::Deserialize;

/// `[priority]` in the configuration.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PriorityConfig {
    /// The class when nothing else decides.
    pub default: PriorityClass,
    /// Profiles whose users are mostly bots.
    pub bots: PriorityClass,
    /// When events carry `value`: a profile whose value per request (Σ value / requests, a
    /// request without one counting 0) is at least this is critical.
    pub value_critical_per_request: Option<f64>,
    /// …and one below this is best effort.
    pub value_best_effort_below: Option<f64>,
    /// Checked in order, before value and bots; the first that matches decides.
    #[serde(rename = "rule")]
    pub rules: Vec<PriorityRule>,
}

impl Default for PriorityConfig {
    fn default() -> Self {
        Self {
            default: PriorityClass::Standard,
            bots: PriorityClass::BestEffort,
            value_critical_per_request: None,
            value_best_effort_below: None,
            rules: Vec::new(),
        }
    }
}

/// Matches when every condition it names holds.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PriorityRule {
    /// A route class name (from the classification rules): its share of the profile's
    /// requests must be at least `min_share`.
    pub route: Option<String>,
    /// A content class (video, text, interactive, api, static), likewise.
    pub content: Option<String>,
    /// A word the profile's label contains, e.g. "mobile" or "office hours".
    pub label: Option<String>,
    /// The share of requests a `route` or `content` condition needs.
    #[serde(default = "default_min_share")]
    pub min_share: f64,
    /// The class a matching profile gets.
    pub class: PriorityClass,
}

fn default_min_share() -> f64 {
    0.1
}

/// What is known of a profile when its priority is decided.
#[derive(Debug, Clone, PartialEq)]
pub struct ProfileFacts {
    /// The profile's label.
    pub label: String,
    /// (route class name, share of requests).
    pub route_shares: Vec<(String, f64)>,
    /// (content class, share of requests).
    pub content_shares: Vec<(ContentClass, f64)>,
    /// Share of requests from automation User-Agents.
    pub bot_share: f64,
    /// The region's automated-clients profile (User-Agent or behaviour rule).
    pub automated: bool,
    /// Σ `value` / requests (a request without one is worth 0); `None` when none carries one.
    pub value_per_request: Option<f64>,
}

impl PriorityConfig {
    /// Every rule names at least one condition, a known content class, a share in (0, 1].
    pub fn validate(&self) -> Result<(), String> {
        for (i, rule) in self.rules.iter().enumerate() {
            let n = i + 1;
            if rule.route.is_none() && rule.content.is_none() && rule.label.is_none() {
                return Err(format!("priority rule {n} names no condition (route, content or label)"));
            }
            if let Some(content) = &rule.content
                && content_class(content).is_none()
            {
                return Err(format!(
                    "priority rule {n}: unknown content class `{content}` (video, text, interactive, api, static)"
                ));
            }
            if !(rule.min_share > 0.0 && rule.min_share <= 1.0) {
                return Err(format!("priority rule {n}: min_share {} must be in (0, 1]", rule.min_share));
            }
        }
        Ok(())
    }

    /// Rules naming a route class the classification rules do not define.
    pub fn unknown_routes<'a>(&'a self, known: &[String]) -> Vec<&'a str> {
        self.rules.iter().filter_map(|r| r.route.as_deref()).filter(|route| !known.iter().any(|k| k == route)).collect()
    }

    /// The class and why.
    pub fn classify(&self, facts: &ProfileFacts) -> (PriorityClass, String) {
        for (i, rule) in self.rules.iter().enumerate() {
            if let Some(why) = rule.matches(facts) {
                return (rule.class, format!("rule {}: {why}", i + 1));
            }
        }
        if let Some(value) = facts.value_per_request {
            if let Some(at_least) = self.value_critical_per_request
                && value >= at_least
            {
                return (PriorityClass::Critical, format!("value {value:.3} per request ≥ {at_least}"));
            }
            if let Some(below) = self.value_best_effort_below
                && value < below
            {
                return (PriorityClass::BestEffort, format!("value {value:.3} per request < {below}"));
            }
        }
        if facts.automated {
            return (self.bots, "automated clients (User-Agent or behaviour)".to_owned());
        }
        if facts.bot_share > 0.5 {
            return (self.bots, format!("mostly bots ({:.0} % of requests)", facts.bot_share * 100.0));
        }
        (self.default, "default".to_owned())
    }
}

impl PriorityRule {
    /// Why it matches, or `None`.
    fn matches(&self, facts: &ProfileFacts) -> Option<String> {
        let mut why = Vec::new();
        if let Some(route) = &self.route {
            let share = facts.route_shares.iter().find(|(r, _)| r == route).map_or(0.0, |(_, s)| *s);
            if share < self.min_share {
                return None;
            }
            why.push(format!("route `{route}` is {:.0} % of requests", share * 100.0));
        }
        if let Some(content) = &self.content {
            let class = content_class(content)?;
            let share = facts.content_shares.iter().find(|(c, _)| *c == class).map_or(0.0, |(_, s)| *s);
            if share < self.min_share {
                return None;
            }
            why.push(format!("content `{content}` is {:.0} % of requests", share * 100.0));
        }
        if let Some(label) = &self.label {
            if !facts.label.contains(label.as_str()) {
                return None;
            }
            why.push(format!("label contains `{label}`"));
        }
        Some(format!("{} (≥ {:.0} %)", why.join(", "), self.min_share * 100.0))
    }
}

fn content_class(name: &str) -> Option<ContentClass> {
    ContentClass::ALL.into_iter().find(|c| c.name() == name)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts() -> ProfileFacts {
        ProfileFacts {
            label: "desktop · api · office hours".into(),
            route_shares: vec![("checkout".into(), 0.3), ("page".into(), 0.7)],
            content_shares: vec![(ContentClass::Api, 0.8), (ContentClass::Text, 0.2)],
            bot_share: 0.0,
            automated: false,
            value_per_request: Some(0.2),
        }
    }

    fn rule(route: Option<&str>, content: Option<&str>, label: Option<&str>, class: PriorityClass) -> PriorityRule {
        PriorityRule {
            route: route.map(Into::into),
            content: content.map(Into::into),
            label: label.map(Into::into),
            min_share: 0.25,
            class,
        }
    }

    #[test]
    fn rules_then_value_then_bots_then_the_default() {
        let mut config = PriorityConfig::default();
        assert_eq!(config.classify(&facts()), (PriorityClass::Standard, "default".to_owned()));
        config.value_best_effort_below = Some(0.5);
        assert_eq!(config.classify(&facts()).0, PriorityClass::BestEffort);
        config.value_critical_per_request = Some(0.1);
        let (class, why) = config.classify(&facts());
        assert_eq!(class, PriorityClass::Critical);
        assert!(why.starts_with("value 0.200"), "{why}");
        config.rules = vec![
            rule(Some("checkout"), None, Some("mobile"), PriorityClass::Critical),
            rule(Some("checkout"), None, None, PriorityClass::BestEffort),
        ];
        // Rule 1 needs a mobile label; rule 2 matches (30 % ≥ 25 %) before value is looked at.
        let (class, why) = config.classify(&facts());
        assert_eq!(class, PriorityClass::BestEffort);
        assert_eq!(why, "rule 2: route `checkout` is 30 % of requests (≥ 25 %)");
        config.rules = vec![rule(None, Some("video"), None, PriorityClass::Critical)];
        assert_eq!(config.classify(&facts()).0, PriorityClass::Critical, "no video: falls through to value");
        let bots = ProfileFacts { bot_share: 0.9, value_per_request: None, ..facts() };
        assert_eq!(config.classify(&bots), (PriorityClass::BestEffort, "mostly bots (90 % of requests)".to_owned()));
    }

    #[test]
    fn bad_rules_are_named() {
        let mut config =
            PriorityConfig { rules: vec![rule(None, None, None, PriorityClass::Critical)], ..Default::default() };
        assert!(config.validate().is_err_and(|e| e.contains("rule 1 names no condition")));
        config.rules = vec![rule(None, Some("podcasts"), None, PriorityClass::Critical)];
        assert!(config.validate().is_err_and(|e| e.contains("unknown content class `podcasts`")));
        config.rules = vec![rule(Some("checkout"), None, None, PriorityClass::Critical)];
        assert!(config.validate().is_ok());
        assert_eq!(config.unknown_routes(&["page".into()]), vec!["checkout"]);
    }
}
