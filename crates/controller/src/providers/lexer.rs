//! A PromQL lexer, as far as rendering a template needs one: where strings (all three quote
//! kinds, with their escapes), `#` comments, identifiers, numbers and durations begin and end.
//!
//! It follows Prometheus's own lexer (`promql/parser/lex.go`) on every rule that decides where a
//! string or a comment ends, because that is what a placeholder's value must not be able to
//! move: a double- or single-quoted string ends at its unescaped quote and may not hold a line
//! break, a backslash always takes the next character with it, a raw string ends at the next
//! backtick whatever precedes it, and a comment runs from `#` (outside strings, also inside
//! braces) to the end of the line (`\n` or `\r`). Inside `[...]` a colon separates durations
//! (subqueries) instead of belonging to a recording rule's name.
//!
//! With placeholders enabled ([`lex_template`]), `{{ ... }}` is opaque: inside a string or a
//! comment it is part of that token's content, in code it is part of a word (an identifier,
//! a number or a duration) whose kind is known only once the value is in.

/// The delimiter of a string literal.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Quote {
    Double,
    Single,
    /// A raw string: no escapes, may span lines.
    Backtick,
}

impl Quote {
    pub fn char(self) -> char {
        match self {
            Quote::Double => '"',
            Quote::Single => '\'',
            Quote::Backtick => '`',
        }
    }

    fn of(c: char) -> Option<Quote> {
        match c {
            '"' => Some(Quote::Double),
            '\'' => Some(Quote::Single),
            '`' => Some(Quote::Backtick),
            _ => None,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TokenKind {
    /// Spaces, tabs and line breaks.
    Space,
    /// From `#` to the end of the line, the line break excluded.
    Comment,
    String(Quote),
    Identifier,
    /// A word that changes the shape of an expression (`or`, `by`, `offset`, ...). Aggregations
    /// and functions are identifiers here: they are followed by their own parentheses.
    Keyword,
    Number,
    Duration,
    /// An operator or a bracket, e.g. `=~`, `(`, `,`.
    Punct,
    /// A code word with a placeholder in it, in a template: it becomes an identifier, a number
    /// or a duration once rendered.
    Word,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Token {
    pub kind: TokenKind,
    /// Byte offsets into the lexed text.
    pub start: usize,
    pub end: usize,
}

impl Token {
    pub fn text<'a>(&self, source: &'a str) -> &'a str {
        &source[self.start..self.end]
    }
}

/// A `{{ ... }}` placeholder of a template.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hole {
    /// Byte offsets of the whole placeholder, braces included.
    pub start: usize,
    pub end: usize,
    /// The index of the token that holds it.
    pub token: usize,
    /// What stands between the braces, trimmed.
    pub variable: String,
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum LexError {
    #[error("at byte {offset}: {what}")]
    Invalid { offset: usize, what: String },
    #[error("'{{{{' at byte {offset} is never closed with '}}}}'")]
    Unclosed { offset: usize },
}

/// Words Prometheus lexes as keywords that join or modify expressions; a value that becomes one
/// of them changes the query's shape, so a bare placeholder may not.
const KEYWORDS: [&str; 15] = [
    "and",
    "or",
    "unless",
    "atan2",
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "bool",
    "offset",
    "start",
    "end",
    "smoothed",
];

/// Lexes PromQL text (no placeholders).
pub fn lex(text: &str) -> Result<Vec<Token>, LexError> {
    Lexer::new(text, false).run().map(|(tokens, _)| tokens)
}

/// Lexes a template: PromQL with `{{ ... }}` placeholders.
pub fn lex_template(text: &str) -> Result<(Vec<Token>, Vec<Hole>), LexError> {
    Lexer::new(text, true).run()
}

struct Lexer<'a> {
    text: &'a str,
    pos: usize,
    holes_enabled: bool,
    /// Inside `[...]`, where `:` separates a subquery's range from its step.
    bracket: bool,
    tokens: Vec<Token>,
    holes: Vec<Hole>,
}

impl<'a> Lexer<'a> {
    fn new(text: &'a str, holes_enabled: bool) -> Self {
        Self {
            text,
            pos: 0,
            holes_enabled,
            bracket: false,
            tokens: Vec::new(),
            holes: Vec::new(),
        }
    }

    fn peek(&self) -> Option<char> {
        self.text[self.pos..].chars().next()
    }

    fn peek_second(&self) -> Option<char> {
        let mut chars = self.text[self.pos..].chars();
        chars.next();
        chars.next()
    }

    fn invalid(&self, offset: usize, what: impl Into<String>) -> LexError {
        LexError::Invalid {
            offset,
            what: what.into(),
        }
    }

    /// If a placeholder starts here, consumes it and records it for the token being built.
    fn hole(&mut self) -> Result<bool, LexError> {
        if !self.holes_enabled || !self.text[self.pos..].starts_with("{{") {
            return Ok(false);
        }
        let start = self.pos;
        let close = self.text[start + 2..]
            .find("}}")
            .ok_or(LexError::Unclosed { offset: start })?;
        let end = start + 2 + close + 2;
        self.holes.push(Hole {
            start,
            end,
            token: self.tokens.len(),
            variable: self.text[start + 2..start + 2 + close].trim().to_string(),
        });
        self.pos = end;
        Ok(true)
    }

    fn emit(&mut self, kind: TokenKind, start: usize) {
        self.tokens.push(Token {
            kind,
            start,
            end: self.pos,
        });
    }

    fn run(mut self) -> Result<(Vec<Token>, Vec<Hole>), LexError> {
        while let Some(c) = self.peek() {
            let start = self.pos;
            if self.holes_enabled && self.text[self.pos..].starts_with("{{") {
                self.word(start)?;
                continue;
            }
            match c {
                ' ' | '\t' | '\n' | '\r' => {
                    while matches!(self.peek(), Some(' ' | '\t' | '\n' | '\r')) {
                        self.pos += 1;
                    }
                    self.emit(TokenKind::Space, start);
                }
                '#' => self.comment(start)?,
                '"' | '\'' | '`' => self.string(start, c)?,
                c if is_word_start(c, self.bracket) => self.word(start)?,
                _ => self.punct(start, c)?,
            }
        }
        Ok((self.tokens, self.holes))
    }

    fn comment(&mut self, start: usize) -> Result<(), LexError> {
        self.pos += 1;
        loop {
            if self.hole()? {
                continue;
            }
            match self.peek() {
                None | Some('\n' | '\r') => break,
                Some(c) => self.pos += c.len_utf8(),
            }
        }
        self.emit(TokenKind::Comment, start);
        Ok(())
    }

    fn string(&mut self, start: usize, open: char) -> Result<(), LexError> {
        let quote = Quote::of(open).ok_or_else(|| self.invalid(start, "not a quote"))?;
        self.pos += 1;
        loop {
            if self.hole()? {
                continue;
            }
            let Some(c) = self.peek() else {
                return Err(self.invalid(start, format!("unterminated {open}string{open}")));
            };
            self.pos += c.len_utf8();
            match c {
                c if c == open => break,
                '\n' if quote != Quote::Backtick => {
                    return Err(self.invalid(
                        start,
                        "a quoted string may not hold a line break; write \\n",
                    ));
                }
                '\\' if quote != Quote::Backtick => {
                    // The escaped character never ends the string. A placeholder right after the
                    // backslash would have its value's first character escaped instead of
                    // standing for itself: refused, as its meaning depends on the value.
                    if self.holes_enabled && self.text[self.pos..].starts_with("{{") {
                        return Err(self.invalid(
                            self.pos - 1,
                            "a placeholder right after a backslash; remove the backslash",
                        ));
                    }
                    match self.peek() {
                        None | Some('\n') => {
                            return Err(self.invalid(start, "escape sequence not terminated"));
                        }
                        Some(escaped) => self.pos += escaped.len_utf8(),
                    }
                }
                _ => {}
            }
        }
        self.emit(TokenKind::String(quote), start);
        Ok(())
    }

    fn word(&mut self, start: usize) -> Result<(), LexError> {
        let first_hole = self.holes.len();
        let numeric = self.peek().is_some_and(|c| c.is_ascii_digit() || c == '.');
        loop {
            if self.hole()? {
                continue;
            }
            match self.peek() {
                Some(c) if c.is_ascii_alphanumeric() || c == '_' => self.pos += 1,
                // A name ends at a dot; a number or a placeholder's word may hold one.
                Some('.') if numeric || self.holes.len() > first_hole => self.pos += 1,
                Some(':') if !self.bracket && !numeric => self.pos += 1,
                // An exponent's sign: 1e-3.
                Some('+' | '-')
                    if numeric
                        && self.holes.len() == first_hole
                        && matches!(self.text[..self.pos].chars().last(), Some('e' | 'E'))
                        && !self.text[start..self.pos].starts_with("0x")
                        && !self.text[start..self.pos].starts_with("0X")
                        && self.peek_second().is_some_and(|c| c.is_ascii_digit()) =>
                {
                    self.pos += 1
                }
                _ => break,
            }
        }
        if self.holes.len() > first_hole {
            self.emit(TokenKind::Word, start);
            return Ok(());
        }
        let text = &self.text[start..self.pos];
        let kind = classify(text).ok_or_else(|| {
            self.invalid(
                start,
                format!("{text:?} is not a number, a duration or a name"),
            )
        })?;
        self.emit(kind, start);
        Ok(())
    }

    fn punct(&mut self, start: usize, c: char) -> Result<(), LexError> {
        let two = matches!(
            (c, self.peek_second()),
            ('=', Some('=' | '~')) | ('!', Some('=' | '~')) | ('<' | '>', Some('='))
        );
        match c {
            _ if two => self.pos += 2,
            '[' => {
                self.bracket = true;
                self.pos += 1;
            }
            ']' => {
                self.bracket = false;
                self.pos += 1;
            }
            '(' | ')' | '{' | '}' | ',' | '=' | '<' | '>' | '+' | '-' | '*' | '/' | '%' | '^'
            | '@' | ':' => self.pos += 1,
            other => {
                return Err(self.invalid(start, format!("unexpected character {other:?}")));
            }
        }
        self.emit(TokenKind::Punct, start);
        Ok(())
    }
}

fn is_word_start(c: char, bracket: bool) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == '.' || (c == ':' && !bracket)
}

/// What a complete code word is, or `None` when Prometheus would refuse it.
pub fn classify(text: &str) -> Option<TokenKind> {
    let first = text.chars().next()?;
    if first.is_ascii_alphabetic() || first == '_' || first == ':' {
        let lower = text.to_ascii_lowercase();
        return Some(if KEYWORDS.contains(&lower.as_str()) {
            TokenKind::Keyword
        } else {
            TokenKind::Identifier
        });
    }
    if is_duration(text) {
        Some(TokenKind::Duration)
    } else if is_number(text) {
        Some(TokenKind::Number)
    } else {
        None
    }
}

/// `1h30m`, `90s`, `1.5h`: digits and a unit, repeated.
fn is_duration(text: &str) -> bool {
    let mut rest = text;
    let mut parts = 0;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '_'))
            .unwrap_or(rest.len());
        if digits == 0 || !rest[..digits].chars().any(|c| c.is_ascii_digit()) {
            return false;
        }
        rest = &rest[digits..];
        let unit = ["ms", "s", "m", "h", "d", "w", "y"]
            .iter()
            .find(|u| rest.starts_with(**u))
            .map(|u| u.len());
        match unit {
            Some(len) => rest = &rest[len..],
            None => return false,
        }
        parts += 1;
    }
    parts > 0
}

/// Decimal, hexadecimal, float with an exponent, with `_` separators. Loose on purpose: the
/// lexer only needs to know where a number ends; Prometheus's parser judges its value.
fn is_number(text: &str) -> bool {
    let hex = text.starts_with("0x") || text.starts_with("0X");
    let digits = if hex { &text[2..] } else { text };
    !digits.is_empty()
        && digits.chars().any(|c| c.is_ascii_hexdigit())
        && digits.chars().all(|c| {
            c.is_ascii_digit()
                || matches!(c, '.' | '_' | 'e' | 'E' | '+' | '-')
                || (hex && c.is_ascii_hexdigit())
        })
}

/// The value of a string token as Prometheus reads it (Go's unquoting rules), or `None` when it
/// is not a valid string literal.
pub fn unquote(token: &str) -> Option<String> {
    let quote = Quote::of(token.chars().next()?)?;
    let q = quote.char();
    let inner = token.strip_prefix(q)?.strip_suffix(q)?;
    if quote == Quote::Backtick {
        return (!inner.contains('`')).then(|| inner.replace('\r', ""));
    }
    let mut out = String::with_capacity(inner.len());
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        if c == q || c == '\n' {
            return None;
        }
        if c != '\\' {
            out.push(c);
            continue;
        }
        let escaped = chars.next()?;
        let simple = match escaped {
            'a' => Some('\u{7}'),
            'b' => Some('\u{8}'),
            'f' => Some('\u{c}'),
            'n' => Some('\n'),
            'r' => Some('\r'),
            't' => Some('\t'),
            'v' => Some('\u{b}'),
            '\\' => Some('\\'),
            c if c == q => Some(c),
            _ => None,
        };
        if let Some(c) = simple {
            out.push(c);
            continue;
        }
        let (count, radix) = match escaped {
            '0'..='7' => (2, 8),
            'x' => (2, 16),
            'u' => (4, 16),
            'U' => (8, 16),
            _ => return None,
        };
        let mut digits = String::new();
        if radix == 8 {
            digits.push(escaped);
        }
        for _ in 0..count {
            digits.push(chars.next()?);
        }
        let code = u32::from_str_radix(&digits, radix).ok()?;
        if matches!(escaped, '0'..='7' | 'x') {
            // Go reads these as a byte; below 0x80 that byte is the character.
            if code >= 0x80 {
                return None;
            }
        }
        out.push(char::from_u32(code)?);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(text: &str) -> Vec<(TokenKind, &str)> {
        lex(text)
            .unwrap()
            .into_iter()
            .filter(|t| t.kind != TokenKind::Space)
            .map(|t| (t.kind, &text[t.start..t.end]))
            .collect()
    }

    #[test]
    fn lexes_the_parts_of_a_query() {
        use TokenKind::*;
        assert_eq!(
            kinds(r#"sum by (le) (rate(x:y_z{a="b\"c",d!~'e'}[5m:30s])) > 0.5e-3 # done"#),
            [
                (Identifier, "sum"),
                (Keyword, "by"),
                (Punct, "("),
                (Identifier, "le"),
                (Punct, ")"),
                (Punct, "("),
                (Identifier, "rate"),
                (Punct, "("),
                (Identifier, "x:y_z"),
                (Punct, "{"),
                (Identifier, "a"),
                (Punct, "="),
                (String(Quote::Double), r#""b\"c""#),
                (Punct, ","),
                (Identifier, "d"),
                (Punct, "!~"),
                (String(Quote::Single), "'e'"),
                (Punct, "}"),
                (Punct, "["),
                (Duration, "5m"),
                (Punct, ":"),
                (Duration, "30s"),
                (Punct, "]"),
                (Punct, ")"),
                (Punct, ")"),
                (Punct, ">"),
                (Number, "0.5e-3"),
                (Comment, "# done"),
            ]
        );
    }

    #[test]
    fn a_quote_in_a_comment_is_comment() {
        use TokenKind::*;
        assert_eq!(
            kinds("# the arm's failed requests\nx{a=\"'\"}"),
            [
                (Comment, "# the arm's failed requests"),
                (Identifier, "x"),
                (Punct, "{"),
                (Identifier, "a"),
                (Punct, "="),
                (String(Quote::Double), "\"'\""),
                (Punct, "}"),
            ]
        );
        // A `#` inside a string is not a comment; a raw string ignores backslashes.
        assert_eq!(
            kinds(r##"x{a="#",b=`\`} 0x1F"##)[4..],
            [
                (String(Quote::Double), "\"#\""),
                (Punct, ","),
                (Identifier, "b"),
                (Punct, "="),
                (String(Quote::Backtick), r"`\`"),
                (Punct, "}"),
                (Number, "0x1F"),
            ]
        );
    }

    #[test]
    fn refuses_what_prometheus_refuses() {
        for bad in [
            "x{a=\"b",
            "x{a=\"b\nc\"}",
            "x{a='b\\",
            "`open",
            "x$",
            "1.2.3q",
        ] {
            assert!(lex(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn placeholders_take_the_context_of_their_token() {
        let text = r#"x{a="{{ v }}"}[{{ interval }}] # {{ c }}"#;
        let (tokens, holes) = lex_template(text).unwrap();
        let contexts: Vec<(TokenKind, &str)> = holes
            .iter()
            .map(|h| (tokens[h.token].kind, h.variable.as_str()))
            .collect();
        assert_eq!(
            contexts,
            [
                (TokenKind::String(Quote::Double), "v"),
                (TokenKind::Word, "interval"),
                (TokenKind::Comment, "c"),
            ]
        );
        assert_eq!(
            lex_template("x{a=\"{{ v\"}"),
            Err(LexError::Unclosed { offset: 5 })
        );
        assert!(lex_template(r#"x{a="\{{ v }}"}"#).is_err());
    }

    #[test]
    fn unquotes_as_go_does() {
        assert_eq!(
            unquote(r#""a\"b\\c\n\x41\u00e9""#).as_deref(),
            Some("a\"b\\c\nAé")
        );
        assert_eq!(unquote(r"'it\'s'").as_deref(), Some("it's"));
        assert_eq!(unquote(r#""\'""#), None);
        assert_eq!(unquote("`a\\b`").as_deref(), Some("a\\b"));
        assert_eq!(unquote("\"a\"b\""), None);
    }
}
