//! Rendering a MetricTemplate's query for one arm of a release.
//!
//! Placeholders are written as in Flagger: `{{ namespace }}`, `{{ target }}`, `{{ interval }}`,
//! `{{ variables.key }}`. A value lands either inside a PromQL string (a label matcher's value),
//! where it is escaped for that string, or outside any string, where only a plain token is
//! accepted. Either way a value cannot end the string or the matcher it was put in.

use std::collections::BTreeMap;

use crate::api::duration::GoDuration;

/// The two sides of a release.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Arm {
    Canary,
    Primary,
}

impl Arm {
    pub fn as_str(self) -> &'static str {
        match self {
            Arm::Canary => "canary",
            Arm::Primary => "primary",
        }
    }
}

/// What a template may refer to, for one Canary.
#[derive(Clone, Debug)]
pub struct RenderContext {
    pub namespace: String,
    /// The Canary's name.
    pub name: String,
    /// The target Deployment's name (the canary arm's workload).
    pub target: String,
    /// The apex Service's name.
    pub service: String,
    pub interval: GoDuration,
    /// The metric's `templateVariables`.
    pub variables: BTreeMap<String, String>,
}

impl RenderContext {
    /// The value of a variable for `arm`, or `None` when it does not exist.
    ///
    /// `target` is the arm's workload, so that one template serves both arms and, for the
    /// canary arm, means what it means in Flagger.
    pub fn lookup(&self, variable: &str, arm: Arm) -> Option<String> {
        let value = match variable {
            "namespace" => self.namespace.clone(),
            "name" => self.name.clone(),
            "target" => match arm {
                Arm::Canary => self.target.clone(),
                Arm::Primary => format!("{}-primary", self.target),
            },
            "service" => self.service.clone(),
            "arm" => arm.as_str().to_string(),
            "arm_service" => format!("{}-{}", self.service, arm.as_str()),
            "interval" => self.interval.promql(),
            other => {
                return self
                    .variables
                    .get(other.strip_prefix("variables.")?)
                    .cloned();
            }
        };
        Some(value)
    }
}

pub const BUILT_IN_VARIABLES: [&str; 7] = [
    "namespace",
    "name",
    "target",
    "service",
    "arm",
    "arm_service",
    "interval",
];

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RenderError {
    #[error(
        "template {template}: unknown variable {variable:?}; use one of {known} or variables.<key> with a key from the metric's templateVariables ({keys})"
    )]
    UnknownVariable {
        template: String,
        variable: String,
        known: String,
        keys: String,
    },
    #[error("template {template}: '{{{{' at byte {offset} is never closed with '}}}}'")]
    Unclosed { template: String, offset: usize },
    #[error(
        "template {template}: {{{{ {variable} }}}} stands outside a quoted string, so its value must be a plain token (letters, digits, _ : .), and {value:?} is not; quote the placeholder in the query"
    )]
    UnsafeBareValue {
        template: String,
        variable: String,
        value: String,
    },
    #[error(
        "template {template}: {{{{ {variable} }}}} stands inside a raw `string`, which cannot escape the backtick in {value:?}; use a double-quoted string"
    )]
    BacktickInRawString {
        template: String,
        variable: String,
        value: String,
    },
}

/// Where the scanner stands in the query text.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Context {
    Code,
    Quoted(char),
}

/// Renders `query` (the template named `template`) for `arm`.
pub fn render(
    template: &str,
    query: &str,
    ctx: &RenderContext,
    arm: Arm,
) -> Result<String, RenderError> {
    let mut out = String::with_capacity(query.len() + 64);
    let mut context = Context::Code;
    let mut rest = query;
    let mut offset = 0;
    while !rest.is_empty() {
        if let Some(after_open) = rest.strip_prefix("{{") {
            let close = after_open.find("}}").ok_or_else(|| RenderError::Unclosed {
                template: template.to_string(),
                offset,
            })?;
            let variable = after_open[..close].trim();
            let value = ctx
                .lookup(variable, arm)
                .ok_or_else(|| unknown(template, variable, ctx))?;
            out.push_str(&substitute(template, variable, &value, context)?);
            let used = 2 + close + 2;
            rest = &rest[used..];
            offset += used;
            continue;
        }
        let Some(c) = rest.chars().next() else { break };
        let mut len = c.len_utf8();
        context = match (context, c) {
            (Context::Code, '"' | '\'' | '`') => Context::Quoted(c),
            (Context::Quoted(q), c) if c == q => Context::Code,
            (Context::Quoted(q), '\\') if q != '`' => {
                // An escaped character never ends the string; copy it with its backslash.
                len += rest[1..].chars().next().map_or(0, char::len_utf8);
                context
            }
            (context, _) => context,
        };
        out.push_str(&rest[..len]);
        rest = &rest[len..];
        offset += len;
    }
    Ok(out)
}

fn unknown(template: &str, variable: &str, ctx: &RenderContext) -> RenderError {
    let keys: Vec<&str> = ctx.variables.keys().map(String::as_str).collect();
    RenderError::UnknownVariable {
        template: template.to_string(),
        variable: variable.to_string(),
        known: BUILT_IN_VARIABLES.join(", "),
        keys: if keys.is_empty() {
            "none set".into()
        } else {
            keys.join(", ")
        },
    }
}

fn substitute(
    template: &str,
    variable: &str,
    value: &str,
    context: Context,
) -> Result<String, RenderError> {
    match context {
        Context::Code => {
            let plain = !value.is_empty()
                && value
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | ':' | '.'));
            if plain {
                Ok(value.to_string())
            } else {
                Err(RenderError::UnsafeBareValue {
                    template: template.to_string(),
                    variable: variable.to_string(),
                    value: value.to_string(),
                })
            }
        }
        Context::Quoted('`') => {
            if value.contains('`') {
                Err(RenderError::BacktickInRawString {
                    template: template.to_string(),
                    variable: variable.to_string(),
                    value: value.to_string(),
                })
            } else {
                Ok(value.to_string())
            }
        }
        Context::Quoted(quote) => Ok(escape_in_string(value, quote)),
    }
}

/// Escapes `value` for a PromQL string delimited by `quote` (Go's escaping rules).
fn escape_in_string(value: &str, quote: char) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c == quote => {
                out.push('\\');
                out.push(c);
            }
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                out.push_str(&format!("\\x{:02x}", c as u32));
            }
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx(variables: &[(&str, &str)]) -> RenderContext {
        RenderContext {
            namespace: "shop".into(),
            name: "checkout".into(),
            target: "checkout".into(),
            service: "checkout-svc".into(),
            interval: GoDuration::from_secs(60),
            variables: variables
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }

    const APP: &str = r#"sum(increase(http_requests_total{namespace="{{ namespace }}",pod=~"{{ target }}-[0-9a-zA-Z]+(-[0-9a-zA-Z]+)",status=~"{{variables.codes}}"}[{{ interval }}]))"#;

    #[test]
    fn renders_each_arm() {
        let c = ctx(&[("codes", "5..")]);
        assert_eq!(
            render("t", APP, &c, Arm::Canary).unwrap(),
            r#"sum(increase(http_requests_total{namespace="shop",pod=~"checkout-[0-9a-zA-Z]+(-[0-9a-zA-Z]+)",status=~"5.."}[1m]))"#
        );
        assert_eq!(
            render("t", APP, &c, Arm::Primary).unwrap(),
            r#"sum(increase(http_requests_total{namespace="shop",pod=~"checkout-primary-[0-9a-zA-Z]+(-[0-9a-zA-Z]+)",status=~"5.."}[1m]))"#
        );
        let services = "{{ arm }} {{arm_service}} {{ service }} {{ name }}";
        assert_eq!(
            render("t", services, &c, Arm::Primary).unwrap_err(),
            RenderError::UnsafeBareValue {
                template: "t".into(),
                variable: "arm_service".into(),
                value: "checkout-svc-primary".into()
            }
        );
        let quoted = r#""{{ arm }}" "{{arm_service}}" '{{ service }}' `{{ name }}`"#;
        assert_eq!(
            render("t", quoted, &c, Arm::Primary).unwrap(),
            r#""primary" "checkout-svc-primary" 'checkout-svc' `checkout`"#
        );
    }

    #[test]
    fn a_missing_variable_is_an_error_that_lists_what_exists() {
        let err = render("app-errors", APP, &ctx(&[("code", "5..")]), Arm::Canary).unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("app-errors") && text.contains("\"variables.codes\""),
            "{text}"
        );
        assert!(text.contains("(code)"), "{text}");
        assert!(render("t", "{{ nope }}", &ctx(&[]), Arm::Canary).is_err());
        assert_eq!(
            render("t", "up{a=\"{{ namespace\"}", &ctx(&[]), Arm::Canary).unwrap_err(),
            RenderError::Unclosed {
                template: "t".into(),
                offset: 6
            }
        );
    }

    /// Values chosen to end the matcher, the string or the whole selector; none may.
    #[test]
    fn hostile_values_stay_inside_their_string() {
        let hostile = [
            r#"5.."} or vector(1) #"#,
            r#"\"} or vector(1) #"#,
            "a\"\n} or up",
            r#"x\"#,
            "\u{7}bell",
        ];
        let query = r#"sum(x{status=~"{{ variables.v }}"}) + sum(y{z='{{ variables.v }}'})"#;
        for value in hostile {
            let out = render("t", query, &ctx(&[("v", value)]), Arm::Canary).unwrap();
            // Re-scan the output: outside strings only the template's own code may remain.
            let code: String = strip_strings(&out);
            assert_eq!(
                code, "sum(x{status=~}) + sum(y{z=})",
                "value {value:?} gave {out}"
            );
        }
    }

    #[test]
    fn hostile_values_are_refused_outside_strings_and_in_raw_strings() {
        let bare = "rate(x[{{ variables.window }}])";
        for value in ["5m]) or vector(1", "1m,", "", "up-up", "a b"] {
            let err = render("t", bare, &ctx(&[("window", value)]), Arm::Canary).unwrap_err();
            assert!(
                matches!(err, RenderError::UnsafeBareValue { .. }),
                "{value:?}"
            );
        }
        let ok = render("t", bare, &ctx(&[("window", "5m")]), Arm::Canary).unwrap();
        assert_eq!(ok, "rate(x[5m])");
        let raw = "x{a=~`{{ variables.v }}`}";
        let err = render("t", raw, &ctx(&[("v", "`} or up")]), Arm::Canary).unwrap_err();
        assert!(matches!(err, RenderError::BacktickInRawString { .. }));
    }

    #[test]
    fn an_escaped_quote_in_the_template_does_not_end_its_string() {
        let query = r#"x{a="q\"{{ variables.v }}"}"#;
        let out = render("t", query, &ctx(&[("v", "\"")]), Arm::Canary).unwrap();
        assert_eq!(out, r#"x{a="q\"\""}"#);
    }

    /// Removes PromQL string literals, honouring escapes, to see what code remains.
    fn strip_strings(text: &str) -> String {
        let mut out = String::new();
        let mut chars = text.chars();
        let mut quote: Option<char> = None;
        while let Some(c) = chars.next() {
            match quote {
                None if matches!(c, '"' | '\'' | '`') => quote = Some(c),
                None => out.push(c),
                Some(q) if c == q => quote = None,
                Some(q) if c == '\\' && q != '`' => {
                    chars.next();
                }
                Some(_) => {}
            }
        }
        assert!(quote.is_none(), "unterminated string in {text}");
        out
    }
}
