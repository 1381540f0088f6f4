//! The installer's pattern language for ASCII frames: literal text with at most one typed capture, matched against the whole frame. Pure; no regex engine.
//!
//! # Syntax
//!
//! A pattern is literal text with at most one *capture* in braces:
//!
//! | capture        | matches (one or more characters, unless bounded)                      |
//! |----------------|------------------------------------------------------------------------|
//! | `{digits}`     | `0`-`9`                                                                |
//! | `{hex}`        | `0`-`9`, `a`-`f`, `A`-`F`                                              |
//! | `{alnum}`      | ASCII letters and digits                                               |
//! | `{text}`       | any printable character (no control characters), spaces included      |
//! | `{flag}`       | one of `1` `0` `on` `off` `true` `false` `yes` `no` (any case): a bool |
//!
//! A capture may bound its length in characters: `{digits:10}` (exactly 10), `{hex:8-14}` (8 to
//! 14). Unbounded captures take 1 to [`MAX_CAPTURE`] characters. `{{` and `}}` stand for literal
//! braces. Patterns are at most [`MAX_PATTERN_LEN`] characters.
//!
//! The pattern must match the *whole* frame (after the profile's optional trimming): `OCC=1`
//! matches `OCC=1` but not `OCC=10`; `QR:{text}` matches `QR:ROOM-301` capturing `ROOM-301`;
//! `{digits:10}` matches a 10-digit card number and nothing else. Matching is linear in the
//! frame length: the literal prefix and suffix are compared, and what lies between them must
//! belong to the capture's class, so there is no backtracking and no pattern can be slow.

use std::fmt;

use thiserror::Error;

/// Longest pattern source, in characters.
pub const MAX_PATTERN_LEN: usize = 256;
/// Longest capture when the pattern gives no bound.
pub const MAX_CAPTURE: usize = 1024;

/// What a capture accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CaptureClass {
    /// ASCII decimal digits.
    Digits,
    /// ASCII hexadecimal digits, either case.
    Hex,
    /// ASCII letters and digits.
    Alnum,
    /// Any non-control character.
    Text,
    /// A boolean word: `1`/`0`, `on`/`off`, `true`/`false`, `yes`/`no`, any case.
    Flag,
}

impl CaptureClass {
    fn name(self) -> &'static str {
        match self {
            CaptureClass::Digits => "digits",
            CaptureClass::Hex => "hex",
            CaptureClass::Alnum => "alnum",
            CaptureClass::Text => "text",
            CaptureClass::Flag => "flag",
        }
    }

    fn from_name(name: &str) -> Option<Self> {
        Some(match name {
            "digits" => CaptureClass::Digits,
            "hex" => CaptureClass::Hex,
            "alnum" => CaptureClass::Alnum,
            "text" => CaptureClass::Text,
            "flag" => CaptureClass::Flag,
            _ => return None,
        })
    }

    fn accepts(self, c: char) -> bool {
        match self {
            CaptureClass::Digits => c.is_ascii_digit(),
            CaptureClass::Hex => c.is_ascii_hexdigit(),
            CaptureClass::Alnum => c.is_ascii_alphanumeric(),
            CaptureClass::Text | CaptureClass::Flag => !c.is_control(),
        }
    }
}

/// Reads a `{flag}` capture: `Some(true)` for `1`/`on`/`true`/`yes`, `Some(false)` for
/// `0`/`off`/`false`/`no` (any case), `None` otherwise.
#[must_use]
pub fn parse_flag(word: &str) -> Option<bool> {
    const TRUE: [&str; 4] = ["1", "on", "true", "yes"];
    const FALSE: [&str; 4] = ["0", "off", "false", "no"];
    if TRUE.iter().any(|t| word.eq_ignore_ascii_case(t)) {
        Some(true)
    } else if FALSE.iter().any(|f| word.eq_ignore_ascii_case(f)) {
        Some(false)
    } else {
        None
    }
}

/// The capture of a pattern.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Capture {
    /// What it accepts.
    pub class: CaptureClass,
    /// Fewest characters (at least 1).
    pub min: usize,
    /// Most characters.
    pub max: usize,
}

/// A compiled pattern: literal prefix, optional capture, literal suffix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pattern {
    prefix: String,
    capture: Option<Capture>,
    suffix: String,
}

/// Why a pattern was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum PatternError {
    /// Longer than [`MAX_PATTERN_LEN`].
    #[error("the pattern is longer than {MAX_PATTERN_LEN} characters")]
    TooLong,
    /// A `{` without its `}` or a lone `}`.
    #[error("unbalanced brace at character {0} (write `{{{{` or `}}}}` for a literal brace)")]
    Unbalanced(usize),
    /// More than one capture.
    #[error("a pattern may hold only one capture")]
    TwoCaptures,
    /// Unknown capture name.
    #[error("unknown capture `{{{0}}}` (use digits, hex, alnum, text or flag)")]
    UnknownCapture(String),
    /// A length bound that is not `N` or `N-M` with `1 <= N <= M <= MAX_CAPTURE`.
    #[error("bad length bound `{0}` (write `N` or `N-M`, 1 <= N <= M <= {MAX_CAPTURE})")]
    BadBound(String),
    /// Control characters cannot be matched (frames are cut at them).
    #[error("the pattern holds a control character")]
    ControlCharacter,
}

/// A successful match.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Match<'a> {
    /// The captured text, if the pattern has a capture.
    pub captured: Option<&'a str>,
}

impl Pattern {
    /// Compiles a pattern (syntax in the module docs).
    pub fn parse(source: &str) -> Result<Pattern, PatternError> {
        if source.chars().count() > MAX_PATTERN_LEN {
            return Err(PatternError::TooLong);
        }
        if source.chars().any(char::is_control) {
            return Err(PatternError::ControlCharacter);
        }
        let mut prefix = String::new();
        let mut suffix = String::new();
        let mut capture = None;
        let mut chars = source.char_indices().peekable();
        while let Some((at, c)) = chars.next() {
            let literal = if capture.is_some() {
                &mut suffix
            } else {
                &mut prefix
            };
            match c {
                '{' if chars.peek().map(|&(_, n)| n) == Some('{') => {
                    chars.next();
                    literal.push('{');
                }
                '}' if chars.peek().map(|&(_, n)| n) == Some('}') => {
                    chars.next();
                    literal.push('}');
                }
                '}' => return Err(PatternError::Unbalanced(at)),
                '{' => {
                    let mut body = String::new();
                    let mut closed = false;
                    for (_, c) in chars.by_ref() {
                        if c == '}' {
                            closed = true;
                            break;
                        }
                        if c == '{' {
                            return Err(PatternError::Unbalanced(at));
                        }
                        body.push(c);
                    }
                    if !closed {
                        return Err(PatternError::Unbalanced(at));
                    }
                    if capture.is_some() {
                        return Err(PatternError::TwoCaptures);
                    }
                    capture = Some(parse_capture(&body)?);
                }
                c => literal.push(c),
            }
        }
        Ok(Pattern {
            prefix,
            capture,
            suffix,
        })
    }

    /// The pattern's capture, if any.
    #[must_use]
    pub fn capture(&self) -> Option<Capture> {
        self.capture
    }

    /// Matches the whole of `frame`.
    #[must_use]
    pub fn matches<'a>(&self, frame: &'a str) -> Option<Match<'a>> {
        let Some(capture) = self.capture else {
            return (frame == self.prefix).then_some(Match { captured: None });
        };
        let middle = frame
            .strip_prefix(self.prefix.as_str())?
            .strip_suffix(self.suffix.as_str())?;
        let mut count = 0usize;
        for c in middle.chars() {
            count += 1;
            if count > capture.max || !capture.class.accepts(c) {
                return None;
            }
        }
        if count < capture.min {
            return None;
        }
        if capture.class == CaptureClass::Flag && parse_flag(middle).is_none() {
            return None;
        }
        Some(Match {
            captured: Some(middle),
        })
    }
}

impl fmt::Display for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let escape = |s: &str| s.replace('{', "{{").replace('}', "}}");
        f.write_str(&escape(&self.prefix))?;
        if let Some(c) = self.capture {
            match (c.min, c.max) {
                (1, MAX_CAPTURE) => write!(f, "{{{}}}", c.class.name())?,
                (min, max) if min == max => write!(f, "{{{}:{min}}}", c.class.name())?,
                (min, max) => write!(f, "{{{}:{min}-{max}}}", c.class.name())?,
            }
        }
        f.write_str(&escape(&self.suffix))
    }
}

fn parse_capture(body: &str) -> Result<Capture, PatternError> {
    let (name, bound) = match body.split_once(':') {
        Some((name, bound)) => (name.trim(), Some(bound.trim())),
        None => (body.trim(), None),
    };
    let class =
        CaptureClass::from_name(name).ok_or_else(|| PatternError::UnknownCapture(name.into()))?;
    let (min, max) = match bound {
        None => (1, MAX_CAPTURE),
        Some(bound) => {
            let bad = || PatternError::BadBound(bound.to_owned());
            let number = |s: &str| s.trim().parse::<usize>().map_err(|_| bad());
            let (min, max) = match bound.split_once('-') {
                Some((min, max)) => (number(min)?, number(max)?),
                None => {
                    let n = number(bound)?;
                    (n, n)
                }
            };
            if min == 0 || min > max || max > MAX_CAPTURE {
                return Err(bad());
            }
            (min, max)
        }
    };
    Ok(Capture { class, min, max })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn captured<'a>(pattern: &str, frame: &'a str) -> Option<Option<&'a str>> {
        Pattern::parse(pattern)
            .unwrap()
            .matches(frame)
            .map(|m| m.captured)
    }

    #[test]
    fn literals_match_whole_frames_only() {
        assert_eq!(captured("OCC=1", "OCC=1"), Some(None));
        assert_eq!(captured("OCC=1", "OCC=10"), None);
        assert_eq!(captured("OCC=1", "xOCC=1"), None);
        assert_eq!(captured("", ""), Some(None));
    }

    #[test]
    fn captures_respect_class_and_bounds() {
        assert_eq!(
            captured("QR:{text}", "QR:ROOM 301/x"),
            Some(Some("ROOM 301/x"))
        );
        assert_eq!(captured("QR:{text}", "QR:"), None);
        assert_eq!(
            captured("{digits:10}", "0004618125"),
            Some(Some("0004618125"))
        );
        assert_eq!(captured("{digits:10}", "000461812"), None);
        assert_eq!(captured("{digits:10}", "000461812a"), None);
        assert_eq!(captured("C{hex:2-4};", "C0aF;"), Some(Some("0aF")));
        assert_eq!(captured("C{hex:2-4};", "C0aF12;"), None);
        assert_eq!(
            captured("ID {alnum} END", "ID ab12 END"),
            Some(Some("ab12"))
        );
        assert_eq!(captured("ID {alnum} END", "ID a b END"), None);
        assert_eq!(captured("OCC={flag}", "OCC=On"), Some(Some("On")));
        assert_eq!(captured("OCC={flag}", "OCC=2"), None);
        // The prefix and suffix may overlap a short frame without a panic.
        assert_eq!(captured("AB{text}BA", "ABA"), None);
        assert_eq!(captured("{{{digits}}}", "{42}"), Some(Some("42")));
    }

    #[test]
    fn bad_patterns_are_refused() {
        let err = |p: &str| Pattern::parse(p).unwrap_err();
        assert_eq!(err("{digits}{hex}"), PatternError::TwoCaptures);
        assert_eq!(
            err("OCC={bits}"),
            PatternError::UnknownCapture("bits".into())
        );
        assert_eq!(err("{digits:0}"), PatternError::BadBound("0".into()));
        assert_eq!(err("{digits:5-2}"), PatternError::BadBound("5-2".into()));
        assert_eq!(err("{digits:x}"), PatternError::BadBound("x".into()));
        assert_eq!(err("{digits"), PatternError::Unbalanced(0));
        assert_eq!(err("a}b"), PatternError::Unbalanced(1));
        assert_eq!(err("a\u{2}"), PatternError::ControlCharacter);
        assert_eq!(err(&"x".repeat(300)), PatternError::TooLong);
    }

    #[test]
    fn display_round_trips() {
        for p in [
            "OCC={flag}",
            "{digits:10}",
            "C{hex:2-4};",
            "{{lit}}",
            "QR:{text}",
        ] {
            assert_eq!(Pattern::parse(p).unwrap().to_string(), p);
        }
    }

    #[test]
    fn flags() {
        assert_eq!(parse_flag("YES"), Some(true));
        assert_eq!(parse_flag("off"), Some(false));
        assert_eq!(parse_flag("2"), None);
    }
}
