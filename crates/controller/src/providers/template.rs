//! Rendering a MetricTemplate's query for one arm of a release.
//!
//! Placeholders are written as in Flagger: `{{ namespace }}`, `{{ target }}`, `{{ interval }}`,
//! `{{ variables.key }}`. Where a placeholder stands is decided by a PromQL lexer (`lexer.rs`):
//! inside a string its value is escaped for that string's quote, inside a `#` comment it may not
//! break the line, and in code it must be one name, number or duration. Either way a value
//! cannot end the string, the comment or the token it was put in.

use std::collections::BTreeMap;

use super::lexer::{Hole, LexError, Quote, Token, TokenKind, lex, lex_template};
use sluice_core::api::duration::GoDuration;

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

#[derive(Clone, Debug, thiserror::Error, PartialEq, Eq)]
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
        "template {template}: the query is not PromQL that sluice can place values in ({source}); fix spec.query"
    )]
    Lex { template: String, source: LexError },
    #[error(
        "template {template}: {{{{ {variable} }}}} stands outside a quoted string, so its value must be one name, number or duration (letters, digits, _ : .), and {value:?} is not; quote the placeholder in the query"
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
    #[error(
        "template {template}: {{{{ {variable} }}}} stands in a # comment, which a line break in {value:?} would end; remove the placeholder from the comment or the line break from the value"
    )]
    LineBreakInComment {
        template: String,
        variable: String,
        value: String,
    },
    #[error(
        "template {template}: the values of {variables} change the query's structure (token {token:?} became {became:?}); quote the placeholders or change the values"
    )]
    StructureChanged {
        template: String,
        variables: String,
        token: String,
        became: String,
    },
}

/// Renders `query` (the template named `template`) for `arm`.
///
/// The template is lexed once; each placeholder's context (a string of a given quote, a
/// comment, or a code word) comes from the token that holds it, and its value is escaped for
/// that context or refused. The rendered query is then lexed again and must have the template's
/// tokens, with only the placeholders' tokens changed: a value can fill its token, never end it.
pub fn render(
    template: &str,
    query: &str,
    ctx: &RenderContext,
    arm: Arm,
) -> Result<String, RenderError> {
    let (tokens, holes) = lex_template(query).map_err(|source| match source {
        LexError::Unclosed { offset } => RenderError::Unclosed {
            template: template.to_string(),
            offset,
        },
        source => RenderError::Lex {
            template: template.to_string(),
            source,
        },
    })?;
    let mut out = String::with_capacity(query.len() + 64);
    let mut copied = 0;
    for hole in &holes {
        out.push_str(&query[copied..hole.start]);
        let value = ctx
            .lookup(&hole.variable, arm)
            .ok_or_else(|| unknown(template, &hole.variable, ctx))?;
        let kind = tokens[hole.token].kind;
        out.push_str(&substitute(template, &hole.variable, &value, kind)?);
        copied = hole.end;
    }
    out.push_str(&query[copied..]);
    check_structure(template, query, &tokens, &holes, &out)?;
    Ok(out)
}

/// The rendered query's tokens against the template's: same kinds, same text where no
/// placeholder stood, and a placeholder's code word turned into one name, number or duration.
fn check_structure(
    template: &str,
    query: &str,
    tokens: &[Token],
    holes: &[Hole],
    rendered: &str,
) -> Result<(), RenderError> {
    let changed = |token: String, became: String| {
        let mut variables: Vec<&str> = holes.iter().map(|h| h.variable.as_str()).collect();
        variables.dedup();
        RenderError::StructureChanged {
            template: template.to_string(),
            variables: variables.join(", "),
            token,
            became,
        }
    };
    let after = lex(rendered).map_err(|e| changed(query.to_string(), e.to_string()))?;
    if after.len() != tokens.len() {
        let first = tokens
            .iter()
            .zip(&after)
            .find(|(a, b)| a.kind != b.kind)
            .map(|(a, b)| (a.text(query).to_string(), b.text(rendered).to_string()))
            .unwrap_or_else(|| (query.to_string(), rendered.to_string()));
        return Err(changed(first.0, first.1));
    }
    for (index, (before, now)) in tokens.iter().zip(&after).enumerate() {
        let filled = holes.iter().any(|h| h.token == index);
        let same = match (before.kind, filled) {
            (TokenKind::Word, _) => matches!(
                now.kind,
                TokenKind::Identifier | TokenKind::Number | TokenKind::Duration
            ),
            (kind, true) => kind == now.kind,
            (kind, false) => kind == now.kind && before.text(query) == now.text(rendered),
        };
        if !same {
            return Err(changed(
                before.text(query).to_string(),
                now.text(rendered).to_string(),
            ));
        }
    }
    Ok(())
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
    context: TokenKind,
) -> Result<String, RenderError> {
    let refuse = |make: fn(String, String, String) -> RenderError| {
        Err(make(
            template.to_string(),
            variable.to_string(),
            value.to_string(),
        ))
    };
    match context {
        TokenKind::String(Quote::Backtick) if value.contains('`') => refuse(
            |template, variable, value| RenderError::BacktickInRawString {
                template,
                variable,
                value,
            },
        ),
        TokenKind::String(Quote::Backtick) => Ok(value.to_string()),
        TokenKind::String(quote) => Ok(escape_in_string(value, quote.char())),
        TokenKind::Comment if value.contains(['\n', '\r']) => refuse(
            |template, variable, value| RenderError::LineBreakInComment {
                template,
                variable,
                value,
            },
        ),
        TokenKind::Comment => Ok(value.to_string()),
        _ => {
            // Alone, the value must lex as one word; glued to the template's own characters,
            // the structure check sees to the whole word.
            let one_word = lex(value).is_ok_and(|tokens| {
                matches!(
                    tokens.as_slice(),
                    [t] if matches!(
                        t.kind,
                        TokenKind::Identifier | TokenKind::Number | TokenKind::Duration
                    )
                )
            });
            if one_word {
                Ok(value.to_string())
            } else {
                refuse(|template, variable, value| RenderError::UnsafeBareValue {
                    template,
                    variable,
                    value,
                })
            }
        }
    }
}

/// Escapes `value` for a PromQL string delimited by `quote` (the escapes Prometheus's lexer
/// accepts, which are Go's).
pub fn escape_in_string(value: &str, quote: char) -> String {
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
            // Prometheus's lexer takes a literal U+FFFD for broken UTF-8 and refuses the query.
            '\u{fffd}' => out.push_str("\\ufffd"),
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

    /// The issue's injection: an apostrophe in a comment made the old scanner think a string
    /// had opened, so the value in the real string after it went in unescaped.
    #[test]
    fn an_apostrophe_in_a_comment_does_not_open_a_string() {
        let query =
            "# the arm's failed requests\nsum(increase(x{status=~\"{{ variables.codes }}\"}[1m]))";
        let value = r#"x"}[1m])) * 0 or vector(0) #"#;
        let out = render("t", query, &ctx(&[("codes", value)]), Arm::Canary).unwrap();
        let tokens = lex(&out).unwrap();
        let strings: Vec<String> = tokens
            .iter()
            .filter(|t| matches!(t.kind, TokenKind::String(_)))
            .filter_map(|t| super::super::lexer::unquote(t.text(&out)))
            .collect();
        assert_eq!(strings, [value], "{out}");
        let code: Vec<&str> = tokens
            .iter()
            .filter(|t| !matches!(t.kind, TokenKind::String(_) | TokenKind::Space))
            .map(|t| t.text(&out))
            .collect();
        assert!(!code.contains(&"vector"), "{out}");
        // The bare form is refused outright.
        let bare = "# it's\nrate(x[{{ variables.w }}])";
        let err = render(
            "t",
            bare,
            &ctx(&[("w", "1m]) or vector(1) #")]),
            Arm::Canary,
        );
        assert!(
            matches!(err, Err(RenderError::UnsafeBareValue { .. })),
            "{err:?}"
        );
    }

    #[test]
    fn a_placeholder_in_a_comment_cannot_break_the_line() {
        let query = "x # for {{ variables.v }}\n";
        assert_eq!(
            render("t", query, &ctx(&[("v", "a'b\"c")]), Arm::Canary).unwrap(),
            "x # for a'b\"c\n"
        );
        let err = render("t", query, &ctx(&[("v", "a\nor vector(1)")]), Arm::Canary);
        assert!(
            matches!(err, Err(RenderError::LineBreakInComment { .. })),
            "{err:?}"
        );
    }

    #[test]
    fn glued_words_must_stay_one_word() {
        let query = "{{ variables.a }}_total > {{ variables.n }}";
        let out = render(
            "t",
            query,
            &ctx(&[("a", "http"), ("n", "0.5")]),
            Arm::Canary,
        );
        assert_eq!(out.unwrap(), "http_total > 0.5");
        for (a, n) in [("or", "1"), ("x", "or"), ("1", "2"), ("x", "-1")] {
            let out = render("t", query, &ctx(&[("a", a), ("n", n)]), Arm::Canary);
            assert!(out.is_err(), "{a:?} {n:?}: {out:?}");
        }
        let keyword = render(
            "t",
            "x {{ variables.a }}{{ variables.b }} y",
            &ctx(&[("a", "o"), ("b", "r")]),
            Arm::Canary,
        );
        assert!(
            matches!(keyword, Err(RenderError::StructureChanged { .. })),
            "{keyword:?}"
        );
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
