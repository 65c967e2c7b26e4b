//! The bodies of the fuzz targets. `tests/robustness.rs` includes this file too and replays the
//! seed corpus through it, so what the fuzzers check stays checked in `cargo test`.

use std::collections::BTreeMap;
use std::path::Path;

use sluice_controller::load::{canary_from_str, templates_from_str};
use sluice_controller::providers::lexer::{TokenKind, lex, lex_template, unquote};
use sluice_controller::providers::template::{Arm, RenderContext, RenderError, render};
use sluice_core::api::duration::GoDuration;
use sluice_core::api::validate::validate_canary;

/// Stands for a placeholder while the template's own escapes are undone.
const MARK: char = '\u{e000}';

/// Input: a template, then up to three values, separated by NUL bytes. The template refers to
/// them as `{{ variables.v0 }}` .. `{{ variables.v2 }}`.
///
/// Checks: nothing panics; a rendered query lexes to the template's tokens (same count, same
/// kinds); a placeholder inside a quoted string reads back, after Prometheus's unquoting, as
/// exactly the template's text with the value in it; and a value in a string or a comment is
/// never refused for changing the structure (that would be an escaping bug).
pub fn render_case(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut parts = text.split('\0');
    let template = parts.next().unwrap_or_default();
    let values: Vec<String> = parts.take(3).map(str::to_string).collect();
    let variables: BTreeMap<String, String> = (0..3)
        .map(|i| {
            let value = values.get(i).cloned().unwrap_or_else(|| "x".into());
            (format!("v{i}"), value)
        })
        .collect();
    let ctx = RenderContext {
        namespace: "shop".into(),
        name: "checkout".into(),
        target: "checkout".into(),
        service: "checkout".into(),
        interval: GoDuration::from_secs(60),
        variables,
    };
    let _ = lex(template);
    let lexed = lex_template(template);
    match render("fuzz", template, &ctx, Arm::Canary) {
        Ok(out) => {
            let Ok((tokens, holes)) = lexed else {
                panic!("rendered a template that does not lex: {template:?}");
            };
            let after = lex(&out).unwrap_or_else(|e| panic!("{out:?} does not lex: {e}"));
            assert_eq!(after.len(), tokens.len(), "{template:?} -> {out:?}");
            for (index, (before, now)) in tokens.iter().zip(&after).enumerate() {
                let filled: Vec<_> = holes.iter().filter(|h| h.token == index).collect();
                match before.kind {
                    TokenKind::Word => {}
                    kind => assert_eq!(kind, now.kind, "{template:?} -> {out:?}"),
                }
                let TokenKind::String(_) = before.kind else {
                    continue;
                };
                if filled.is_empty() || template.contains(MARK) {
                    continue;
                }
                // The template's token with marks for its placeholders, unquoted, then the
                // values put in: what Prometheus must read.
                let mut marked = String::new();
                let mut copied = before.start;
                for hole in &filled {
                    marked.push_str(&template[copied..hole.start]);
                    marked.push(MARK);
                    copied = hole.end;
                }
                marked.push_str(&template[copied..before.end]);
                let Some(unquoted) = unquote(&marked) else {
                    continue;
                };
                let mut expected = String::new();
                let mut values = filled
                    .iter()
                    .map(|h| ctx.lookup(&h.variable, Arm::Canary).unwrap_or_default());
                for c in unquoted.chars() {
                    if c == MARK {
                        expected.push_str(&values.next().unwrap_or_default());
                    } else {
                        expected.push(c);
                    }
                }
                let read = unquote(now.text(&out));
                if before.kind
                    != TokenKind::String(sluice_controller::providers::lexer::Quote::Backtick)
                {
                    assert_eq!(
                        read.as_deref(),
                        Some(expected.as_str()),
                        "{template:?} -> {out:?}"
                    );
                }
            }
        }
        Err(RenderError::StructureChanged { .. }) => {
            let Ok((tokens, holes)) = lexed else {
                panic!("a structure check on a template that does not lex: {template:?}");
            };
            assert!(
                holes
                    .iter()
                    .any(|h| tokens[h.token].kind == TokenKind::Word),
                "a value in a string or comment changed the structure: {template:?} {:?}",
                ctx.variables
            );
        }
        Err(_) => {}
    }
}

/// Input: a YAML file. Checks that loading (and validating what loads) never panics; the
/// fuzzer's timeout catches inputs that take long.
pub fn load_case(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let path = Path::new("fuzz.yaml");
    if let Ok(canary) = canary_from_str(path, text) {
        let _ = validate_canary(&canary);
    }
    let _ = templates_from_str(path, text);
}
