//! The nesting depth of YAML flow collections (`[…]`, `{…}`), bounded before the text is parsed.
//!
//! libyaml, under serde_yaml_ng, scans in time quadratic in that depth: a 200 KB file of
//! 100,000 nested `[` took 34 s of CPU to reject (its scanner walks every open level's pending
//! key at each token), and serde_yaml_ng's recursion limit is only consulted after the whole
//! document was scanned. So the text is first walked by this scanner, which follows libyaml's
//! tokenizer (`scanner.c`: `fetch_next_token` and the scalar scanners) exactly as far as it
//! decides which `[ { ] }` are flow indicators — not those in quoted, plain or block scalars,
//! comments, tags or directives — and stops at the first indicator past the limit. It is linear
//! in the text.
//!
//! It must never see less depth than libyaml does, so it mirrors libyaml's rules even where they
//! are surprising (a `#` right after `]` starts a comment; a plain scalar in block context may
//! hold `[`). Where libyaml would report a syntax error, scanning stops: libyaml stops there too,
//! and the parser reports the error.

/// Where the first flow collection past the limit opens (1-based, like parser messages).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct TooDeep {
    pub(super) line: usize,
    pub(super) column: usize,
}

/// `Err` if some flow collection of `text` is nested deeper than `limit`.
pub(super) fn check(text: &str, limit: usize) -> Result<(), TooDeep> {
    let mut scanner = Scanner {
        text: text.as_bytes(),
        at: Mark::default(),
        flow_level: 0,
        limit,
        indent: -1,
        indents: Vec::new(),
        simple_key_allowed: true,
        key: None,
    };
    match scanner.run() {
        Err(Stop::TooDeep(too_deep)) => Err(too_deep),
        Ok(()) | Err(Stop::Syntax) => Ok(()),
    }
}

/// A position: byte index (libyaml's `mark.index` counts bytes too), line, column in characters.
#[derive(Debug, Clone, Copy, Default)]
struct Mark {
    index: usize,
    line: usize,
    column: i64,
}

enum Stop {
    /// libyaml reports a syntax error here, so it scans no further either.
    Syntax,
    TooDeep(TooDeep),
}

struct Scanner<'a> {
    text: &'a [u8],
    at: Mark,
    flow_level: usize,
    limit: usize,
    /// The block indentation stack (`parser->indent`, `parser->indents`).
    indent: i64,
    indents: Vec<i64>,
    simple_key_allowed: bool,
    /// The possible simple key of flow level 0 (the only level whose keys move `indent`).
    key: Option<Mark>,
}

impl Scanner<'_> {
    fn byte(&self, ahead: usize) -> u8 {
        self.text.get(self.at.index + ahead).copied().unwrap_or(0)
    }

    fn is_break(&self, ahead: usize) -> bool {
        match self.byte(ahead) {
            b'\r' | b'\n' => true,
            0xC2 => self.byte(ahead + 1) == 0x85,
            0xE2 => self.byte(ahead + 1) == 0x80 && matches!(self.byte(ahead + 2), 0xA8 | 0xA9),
            _ => false,
        }
    }

    fn is_blank(&self, ahead: usize) -> bool {
        matches!(self.byte(ahead), b' ' | b'\t')
    }

    /// Blank, line break or the end (libyaml's `IS_BLANKZ`; NUL is its end of input).
    fn is_blankz(&self, ahead: usize) -> bool {
        self.is_blank(ahead) || self.is_break(ahead) || self.byte(ahead) == 0
    }

    fn at_end(&self) -> bool {
        self.byte(0) == 0
    }

    /// One character forward (UTF-8: the lead byte and its continuation bytes).
    fn skip(&mut self) {
        let width = match self.byte(0) {
            0x00..=0x7F => 1,
            0xC0..=0xDF => 2,
            0xE0..=0xEF => 3,
            _ => 4,
        };
        self.at.index = (self.at.index + width).min(self.text.len());
        self.at.column += 1;
    }

    /// Past one line break (`\r\n` counts as one).
    fn skip_line(&mut self) {
        let width = match (self.byte(0), self.byte(1)) {
            (b'\r', b'\n') => 2,
            (b'\r' | b'\n', _) => 1,
            (0xC2, _) => 2,
            _ => 3,
        };
        self.at.index = (self.at.index + width).min(self.text.len());
        self.at.column = 0;
        self.at.line += 1;
    }

    fn skip_to_line_end(&mut self) {
        while !self.is_break(0) && !self.at_end() {
            self.skip();
        }
    }

    fn document_indicator(&self) -> bool {
        self.at.column == 0
            && (self.text[self.at.index..].starts_with(b"---")
                || self.text[self.at.index..].starts_with(b"..."))
            && self.is_blankz(3)
    }

    fn run(&mut self) -> Result<(), Stop> {
        loop {
            self.skip_to_next_token();
            self.stale_key();
            self.unroll_indent(self.at.column);
            if self.at_end() {
                return Ok(());
            }
            self.token()?;
        }
    }

    /// `yaml_parser_fetch_next_token`, after skipping to the token.
    fn token(&mut self) -> Result<(), Stop> {
        let flow = self.flow_level > 0;
        let c = self.byte(0);
        if self.at.column == 0 && c == b'%' {
            self.unroll_indent(-1);
            self.key = None;
            self.simple_key_allowed = false;
            self.skip_to_line_end();
            return Ok(());
        }
        if self.document_indicator() {
            self.unroll_indent(-1);
            self.key = None;
            self.simple_key_allowed = false;
            (0..3).for_each(|_| self.skip());
            return Ok(());
        }
        match c {
            b'[' | b'{' => {
                self.save_key();
                self.flow_level += 1;
                if self.flow_level > self.limit {
                    return Err(Stop::TooDeep(TooDeep {
                        line: self.at.line + 1,
                        column: self.at.column as usize + 1,
                    }));
                }
                self.simple_key_allowed = true;
                self.skip();
            }
            b']' | b'}' => {
                if !flow {
                    self.key = None;
                }
                self.flow_level = self.flow_level.saturating_sub(1);
                self.simple_key_allowed = false;
                self.skip();
            }
            b',' => {
                if !flow {
                    self.key = None;
                }
                self.simple_key_allowed = true;
                self.skip();
            }
            b'-' if self.is_blankz(1) => {
                if !flow {
                    self.roll_indent(self.at.column);
                    self.key = None;
                }
                self.simple_key_allowed = true;
                self.skip();
            }
            b'?' if flow || self.is_blankz(1) => {
                if !flow {
                    self.roll_indent(self.at.column);
                    self.key = None;
                }
                self.simple_key_allowed = !flow;
                self.skip();
            }
            b':' if flow || self.is_blankz(1) => {
                if !flow {
                    match self.key.take() {
                        Some(key) => {
                            self.roll_indent(key.column);
                            self.simple_key_allowed = false;
                        }
                        None => {
                            self.roll_indent(self.at.column);
                            self.simple_key_allowed = true;
                        }
                    }
                } else {
                    self.simple_key_allowed = false;
                }
                self.skip();
            }
            b'*' | b'&' => {
                self.save_key();
                self.simple_key_allowed = false;
                self.skip();
                while self.byte(0).is_ascii_alphanumeric() || matches!(self.byte(0), b'_' | b'-') {
                    self.skip();
                }
            }
            b'!' => {
                self.save_key();
                self.simple_key_allowed = false;
                self.tag()?;
            }
            b'|' | b'>' if !flow => {
                self.key = None;
                self.simple_key_allowed = true;
                self.block_scalar()?;
            }
            b'\'' | b'"' => {
                self.save_key();
                self.simple_key_allowed = false;
                self.quoted_scalar(c == b'\'')?;
            }
            _ if self.starts_plain_scalar() => {
                self.save_key();
                self.simple_key_allowed = false;
                self.plain_scalar()?;
            }
            _ => return Err(Stop::Syntax),
        }
        Ok(())
    }

    /// `yaml_parser_scan_to_next_token`: spaces, tabs, comments and line breaks. (libyaml
    /// refuses some tabs here; skipping them only scans further than libyaml would.)
    fn skip_to_next_token(&mut self) {
        loop {
            while self.is_blank(0) {
                self.skip();
            }
            if self.byte(0) == b'#' {
                self.skip_to_line_end();
            }
            if !self.is_break(0) {
                return;
            }
            self.skip_line();
            if self.flow_level == 0 {
                self.simple_key_allowed = true;
            }
        }
    }

    /// A simple key stays possible on its line and within 1024 bytes (`stale_simple_keys`).
    fn stale_key(&mut self) {
        if let Some(key) = self.key
            && (key.line < self.at.line || key.index + 1024 < self.at.index)
        {
            self.key = None;
        }
    }

    fn save_key(&mut self) {
        if self.flow_level == 0 && self.simple_key_allowed {
            self.key = Some(self.at);
        }
    }

    fn roll_indent(&mut self, column: i64) {
        if self.flow_level == 0 && self.indent < column {
            self.indents.push(self.indent);
            self.indent = column;
        }
    }

    fn unroll_indent(&mut self, column: i64) {
        if self.flow_level > 0 {
            return;
        }
        while self.indent > column {
            self.indent = self.indents.pop().unwrap_or(-1);
        }
    }

    /// The last condition of `fetch_next_token`: what may start a plain scalar.
    fn starts_plain_scalar(&self) -> bool {
        let c = self.byte(0);
        let indicator = self.is_blankz(0) || b"-?:,[]{}#&*!|>'\"%@`".contains(&c);
        !indicator
            || (c == b'-' && !self.is_blank(1))
            || (self.flow_level == 0 && matches!(c, b'?' | b':') && !self.is_blankz(1))
    }

    /// `yaml_parser_scan_tag`: `!<uri>` or `!handle!suffix`, then a blank (or `,` in flow).
    fn tag(&mut self) -> Result<(), Stop> {
        self.skip();
        if self.byte(0) == b'<' {
            while self.byte(0) != b'>' && !self.is_blankz(0) {
                self.skip();
            }
            if self.byte(0) != b'>' {
                return Err(Stop::Syntax);
            }
            self.skip();
        } else {
            // Handle and suffix together: URI characters, without `,` `[` `]`.
            while self.byte(0).is_ascii_alphanumeric()
                || b"-_;/?:@&=+$.%!~*'()".contains(&self.byte(0))
            {
                self.skip();
            }
        }
        if self.is_blankz(0) || (self.flow_level > 0 && self.byte(0) == b',') {
            Ok(())
        } else {
            Err(Stop::Syntax)
        }
    }

    /// `yaml_parser_scan_flow_scalar`: `'…'` (`''` is a quote) or `"…"` (`\` escapes).
    fn quoted_scalar(&mut self, single: bool) -> Result<(), Stop> {
        let quote = if single { b'\'' } else { b'"' };
        self.skip();
        loop {
            if self.document_indicator() || self.at_end() {
                return Err(Stop::Syntax);
            }
            let c = self.byte(0);
            if self.is_break(0) {
                self.skip_line();
            } else if single && c == b'\'' && self.byte(1) == b'\'' {
                self.skip();
                self.skip();
            } else if c == quote {
                self.skip();
                return Ok(());
            } else if !single && c == b'\\' {
                self.skip();
                if self.is_break(0) {
                    self.skip_line();
                } else if !self.at_end() {
                    self.skip();
                }
            } else {
                self.skip();
            }
        }
    }

    /// `yaml_parser_scan_plain_scalar`, with its line folding and indentation rule.
    fn plain_scalar(&mut self) -> Result<(), Stop> {
        let flow = self.flow_level > 0;
        let indent = self.indent + 1;
        let mut leading_blanks = false;
        loop {
            if self.document_indicator() || self.byte(0) == b'#' {
                break;
            }
            while !self.is_blankz(0) {
                let c = self.byte(0);
                if flow && c == b':' && b",?[]{}".contains(&self.byte(1)) {
                    return Err(Stop::Syntax);
                }
                if (c == b':' && self.is_blankz(1)) || (flow && b",[]{}".contains(&c)) {
                    break;
                }
                leading_blanks = false;
                self.skip();
            }
            if !(self.is_blank(0) || self.is_break(0)) {
                break;
            }
            while self.is_blank(0) || self.is_break(0) {
                if self.is_blank(0) {
                    if leading_blanks && self.at.column < indent && self.byte(0) == b'\t' {
                        return Err(Stop::Syntax);
                    }
                    self.skip();
                } else {
                    self.skip_line();
                    leading_blanks = true;
                }
            }
            if !flow && self.at.column < indent {
                break;
            }
        }
        if leading_blanks {
            self.simple_key_allowed = true;
        }
        Ok(())
    }

    /// `yaml_parser_scan_block_scalar`: the header, then every line at the content indentation.
    fn block_scalar(&mut self) -> Result<(), Stop> {
        self.skip();
        let mut increment = 0;
        let digit = |c: u8| c.is_ascii_digit().then(|| i64::from(c - b'0'));
        if matches!(self.byte(0), b'+' | b'-') {
            self.skip();
            if let Some(d) = digit(self.byte(0)) {
                if d == 0 {
                    return Err(Stop::Syntax);
                }
                increment = d;
                self.skip();
            }
        } else if let Some(d) = digit(self.byte(0)) {
            if d == 0 {
                return Err(Stop::Syntax);
            }
            increment = d;
            self.skip();
            if matches!(self.byte(0), b'+' | b'-') {
                self.skip();
            }
        }
        while self.is_blank(0) {
            self.skip();
        }
        if self.byte(0) == b'#' {
            self.skip_to_line_end();
        }
        if self.is_break(0) {
            self.skip_line();
        } else if !self.at_end() {
            return Err(Stop::Syntax);
        }
        let mut indent = match increment {
            0 => 0,
            n if self.indent >= 0 => self.indent + n,
            n => n,
        };
        self.block_scalar_breaks(&mut indent)?;
        while self.at.column == indent && !self.at_end() {
            self.skip_to_line_end();
            if self.is_break(0) {
                self.skip_line();
            }
            self.block_scalar_breaks(&mut indent)?;
        }
        Ok(())
    }

    /// `yaml_parser_scan_block_scalar_breaks`: indentation and empty lines; settles an
    /// undeclared content indentation from the first non-empty line.
    fn block_scalar_breaks(&mut self, indent: &mut i64) -> Result<(), Stop> {
        let mut max_indent = 0;
        loop {
            while (*indent == 0 || self.at.column < *indent) && self.byte(0) == b' ' {
                self.skip();
            }
            max_indent = max_indent.max(self.at.column);
            if (*indent == 0 || self.at.column < *indent) && self.byte(0) == b'\t' {
                return Err(Stop::Syntax);
            }
            if !self.is_break(0) {
                break;
            }
            self.skip_line();
        }
        if *indent == 0 {
            *indent = max_indent.max(self.indent + 1).max(1);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn depth_ok(text: &str, limit: usize) -> bool {
        check(text, limit).is_ok()
    }

    #[test]
    fn counts_flow_collections() {
        assert!(depth_ok("vms: [[[x]]]\n", 3));
        assert_eq!(
            check("vms: [[[[x]]]]\n", 3),
            Err(TooDeep { line: 1, column: 9 })
        );
        assert!(!depth_ok("a: {b: [{c: [1]}]}", 3));
        assert!(
            depth_ok("a: [1]\nb: [[2]]\nc: [[[3]]]\n", 3),
            "closed levels do not add up"
        );
    }

    #[test]
    fn brackets_in_scalars_and_comments_are_not_collections() {
        let deep = "[".repeat(10);
        for text in [
            format!("a: '{deep}'\n"),
            format!("a: \"{deep}\"\n"),
            format!("a: \"x\\\"{deep}\"\n"),
            format!("a: 'it''s {deep}'\n"),
            format!("a: x{deep}\n"),
            format!("a: x {deep}\n"),
            format!("a: don't {deep}\n"),
            format!("a: b # {deep}\n"),
            format!("a: |\n  {deep}\n  x\nb: 1\n"),
            format!("- >-\n   {deep}\n- x\n"),
            format!("a: !t{deep}\n"),
            format!("a: \"multi\n  line {deep}\"\n"),
        ] {
            assert!(depth_ok(&text, 3), "{text:?}");
        }
    }

    #[test]
    fn collections_after_tricky_scalars_are_counted() {
        let deep = "[".repeat(10);
        for text in [
            // The quote is inside a plain scalar, so the next line's collections are real.
            format!("a: don't\nb: {deep}\n"),
            format!("a: x \"y\nb: {deep}\n"),
            // A `#` right after a collection starts a comment (libyaml), then a new line.
            format!("a: [x]#'\nb: {deep}\n"),
            // The block scalar ends where the indentation falls back.
            format!("a: |\n  text '\nb: {deep}\n"),
            format!("  - key: |\n      x '\n    other: {deep}\n"),
            // In a flow collection, a quote after text is part of a plain scalar.
            format!("a: [don't, {deep}\n"),
            format!("a: [x \"y, {deep}\n"),
            // A tag ends at its blank; `,` `[` `]` are not tag characters.
            format!("a: [!t {deep}\n"),
            format!("a: &anchor {deep}\n"),
        ] {
            assert!(!depth_ok(&text, 3), "{text:?}");
        }
    }

    #[test]
    fn stops_at_the_first_level_past_the_limit() {
        // 100,000 levels in 200 KB, the shape that cost libyaml 34 s.
        let text = format!("vms: {}{}\n", "[".repeat(100_000), "]".repeat(100_000));
        assert_eq!(
            check(&text, 128),
            Err(TooDeep {
                line: 1,
                column: 134
            })
        );
        let wide = "- {a: [1, 'x'], b: \"y\"}\n".repeat(1000);
        assert!(depth_ok(&wide, 2));
    }
}
