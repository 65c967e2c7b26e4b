//! `--watch-label-selector`: which Canaries are this controller's. The API server filters the
//! watch; the reconcile checks again on the Canary it reads afresh, because a Canary relabelled
//! to another shard stays in this one's cache until the watch says it left, and a step taken
//! then would be taken by both shards.

use std::collections::{BTreeMap, BTreeSet};

/// One requirement of a label selector, in Kubernetes' syntax.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Requirement {
    Exists(String),
    Absent(String),
    In(String, BTreeSet<String>),
    NotIn(String, BTreeSet<String>),
}

/// A parsed label selector: every requirement must hold.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LabelSelector {
    text: String,
    requirements: Vec<Requirement>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error(
    "--watch-label-selector {text:?}: {problem}; write requirements as key=value, key!=value, key, !key, key in (a,b) or key notin (a,b), separated by commas"
)]
pub struct SelectorError {
    text: String,
    problem: String,
}

/// Splits at commas outside parentheses.
fn split_requirements(text: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let (mut depth, mut start) = (0usize, 0usize);
    for (i, c) in text.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth = depth.saturating_sub(1),
            ',' if depth == 0 => {
                parts.push(&text[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&text[start..]);
    parts
}

fn valid_key(key: &str) -> bool {
    !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/'))
}

impl LabelSelector {
    pub fn parse(text: &str) -> Result<Self, SelectorError> {
        let error = |problem: String| SelectorError {
            text: text.to_string(),
            problem,
        };
        let mut requirements = Vec::new();
        for part in split_requirements(text) {
            let part = part.trim();
            if part.is_empty() {
                return Err(error("an empty requirement".into()));
            }
            let requirement = if let Some(key) = part.strip_prefix('!') {
                Requirement::Absent(key.trim().to_string())
            } else if let Some((key, value)) = part.split_once("!=") {
                Requirement::NotIn(key.trim().into(), [value.trim().to_string()].into())
            } else if let Some((key, value)) = part.split_once("==").or(part.split_once('=')) {
                Requirement::In(key.trim().into(), [value.trim().to_string()].into())
            } else if let Some((key, rest)) = part.split_once(char::is_whitespace) {
                let rest = rest.trim();
                let (negated, values) = if let Some(v) = rest.strip_prefix("notin") {
                    (true, v)
                } else if let Some(v) = rest.strip_prefix("in") {
                    (false, v)
                } else {
                    return Err(error(format!("{part:?} is no requirement")));
                };
                let values = values
                    .trim()
                    .strip_prefix('(')
                    .and_then(|v| v.strip_suffix(')'))
                    .ok_or_else(|| error(format!("{part:?}: the values go in parentheses")))?;
                let values: BTreeSet<String> =
                    values.split(',').map(|v| v.trim().to_string()).collect();
                if negated {
                    Requirement::NotIn(key.trim().into(), values)
                } else {
                    Requirement::In(key.trim().into(), values)
                }
            } else {
                Requirement::Exists(part.to_string())
            };
            let key = match &requirement {
                Requirement::Exists(k)
                | Requirement::Absent(k)
                | Requirement::In(k, _)
                | Requirement::NotIn(k, _) => k,
            };
            if !valid_key(key) {
                return Err(error(format!("{key:?} is not a label key")));
            }
            requirements.push(requirement);
        }
        Ok(Self {
            text: text.to_string(),
            requirements,
        })
    }

    /// The selector as given, for the watch (the API server parses it the same way).
    pub fn as_str(&self) -> &str {
        &self.text
    }

    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.requirements.iter().all(|r| match r {
            Requirement::Exists(k) => labels.contains_key(k),
            Requirement::Absent(k) => !labels.contains_key(k),
            Requirement::In(k, values) => labels.get(k).is_some_and(|v| values.contains(v)),
            // As Kubernetes: a missing label satisfies `!=` and `notin`.
            Requirement::NotIn(k, values) => labels.get(k).is_none_or(|v| !values.contains(v)),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn fluxs_shard_selectors_match_as_the_api_server_does() {
        let one = LabelSelector::parse("sharding.fluxcd.io/key=shard1").unwrap();
        let rest = LabelSelector::parse("!sharding.fluxcd.io/key").unwrap();
        let in_one = labels(&[("sharding.fluxcd.io/key", "shard1"), ("app", "x")]);
        let in_two = labels(&[("sharding.fluxcd.io/key", "shard2")]);
        let in_none = labels(&[("app", "x")]);
        assert!(one.matches(&in_one) && !one.matches(&in_two) && !one.matches(&in_none));
        assert!(!rest.matches(&in_one) && !rest.matches(&in_two) && rest.matches(&in_none));
        assert_eq!(one.as_str(), "sharding.fluxcd.io/key=shard1");
    }

    #[test]
    fn set_and_inequality_requirements() {
        let s = LabelSelector::parse("tier in (a, b),env!=prod, team").unwrap();
        assert!(s.matches(&labels(&[("tier", "a"), ("team", "x")])));
        assert!(!s.matches(&labels(&[("tier", "a"), ("team", "x"), ("env", "prod")])));
        assert!(!s.matches(&labels(&[("tier", "c"), ("team", "x")])));
        assert!(!s.matches(&labels(&[("tier", "b")])));
        let n = LabelSelector::parse("tier notin (a,b)").unwrap();
        assert!(n.matches(&labels(&[])) && !n.matches(&labels(&[("tier", "b")])));
        assert!(
            LabelSelector::parse("tier==a")
                .unwrap()
                .matches(&labels(&[("tier", "a")]))
        );
    }

    #[test]
    fn a_bad_selector_is_named_with_the_syntax() {
        let e = LabelSelector::parse("a=b,,c").unwrap_err();
        assert!(e.to_string().contains("an empty requirement"), "{e}");
        assert!(e.to_string().contains("key in (a,b)"), "{e}");
        let e = LabelSelector::parse("tier in a,b").unwrap_err();
        assert!(e.to_string().contains("parentheses"), "{e}");
        assert!(LabelSelector::parse("bad key=x").is_err());
    }
}
