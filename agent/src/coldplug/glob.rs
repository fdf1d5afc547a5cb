//! Shell-glob matching of module alias patterns against modaliases, as kmod does it
//! (`fnmatch(pattern, modalias, 0)`): `*`, `?`, `[...]` classes with ranges and `!`/`^`
//! negation, and `\` escapes. Bytes, not characters: modaliases are ASCII.

#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    Byte(u8),
    AnyByte,
    AnyRun,
    Class {
        negated: bool,
        ranges: Vec<(u8, u8)>,
    },
}

/// A compiled pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Glob {
    tokens: Vec<Token>,
    /// The bytes before the first wildcard: a cheap first test.
    prefix: Vec<u8>,
}

impl Glob {
    pub fn new(pattern: &str) -> Glob {
        let p = pattern.as_bytes();
        let mut tokens = Vec::new();
        let mut i = 0;
        while i < p.len() {
            let t = match p[i] {
                b'*' => Token::AnyRun,
                b'?' => Token::AnyByte,
                b'\\' if i + 1 < p.len() => {
                    i += 1;
                    Token::Byte(p[i])
                }
                b'[' => match class(&p[i + 1..]) {
                    Some((token, used)) => {
                        i += used;
                        token
                    }
                    // An unterminated `[` is an ordinary byte, as in fnmatch.
                    None => Token::Byte(b'['),
                },
                b => Token::Byte(b),
            };
            tokens.push(t);
            i += 1;
        }
        let prefix = tokens
            .iter()
            .map_while(|t| match t {
                Token::Byte(b) => Some(*b),
                _ => None,
            })
            .collect();
        Glob { tokens, prefix }
    }

    /// Whether the whole of `text` matches.
    pub fn matches(&self, text: &str) -> bool {
        let t = text.as_bytes();
        if !t.starts_with(&self.prefix) {
            return false;
        }
        let (mut ti, mut pi) = (0, 0);
        // Where to resume after the last `*`: the token after it, and the text position
        // it has swallowed up to.
        let mut star: Option<(usize, usize)> = None;
        while ti < t.len() {
            let step = match self.tokens.get(pi) {
                Some(Token::AnyRun) => {
                    star = Some((pi + 1, ti));
                    pi += 1;
                    continue;
                }
                Some(Token::AnyByte) => true,
                Some(Token::Byte(b)) => *b == t[ti],
                Some(Token::Class { negated, ranges }) => {
                    ranges.iter().any(|&(lo, hi)| lo <= t[ti] && t[ti] <= hi) != *negated
                }
                None => false,
            };
            if step {
                ti += 1;
                pi += 1;
            } else if let Some((after_star, swallowed)) = star {
                pi = after_star;
                ti = swallowed + 1;
                star = Some((after_star, swallowed + 1));
            } else {
                return false;
            }
        }
        self.tokens[pi..].iter().all(|t| *t == Token::AnyRun)
    }
}

/// A class after its `[`: the token and how many bytes it used (through the `]`).
fn class(p: &[u8]) -> Option<(Token, usize)> {
    let mut i = 0;
    let negated = matches!(p.first(), Some(b'!' | b'^'));
    if negated {
        i += 1;
    }
    let mut ranges = Vec::new();
    let mut first = true;
    loop {
        let b = *p.get(i)?;
        if b == b']' && !first {
            return Some((Token::Class { negated, ranges }, i + 1));
        }
        first = false;
        if p.get(i + 1) == Some(&b'-') && p.get(i + 2).is_some_and(|&c| c != b']') {
            ranges.push((b, p[i + 2]));
            i += 3;
        } else {
            ranges.push((b, b));
            i += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(pattern: &str, text: &str) -> bool {
        Glob::new(pattern).matches(text)
    }

    #[test]
    fn stars_question_marks_and_literals() {
        assert!(m("abc", "abc"));
        assert!(!m("abc", "abcd"));
        assert!(!m("abcd", "abc"));
        assert!(m("a*", "a"));
        assert!(m("*", ""));
        assert!(m("a*c", "abbbc"));
        assert!(m("a*b*c", "axxbyyc"));
        assert!(!m("a*b*c", "axxbyy"));
        assert!(m("a?c", "abc"));
        assert!(!m("a?c", "ac"));
        assert!(m("*x*", "aaxaa"));
        assert!(m("a**b", "ab"));
        // Backtracking past a partial match.
        assert!(m("*abc", "ababc"));
        assert!(m("a\\*b", "a*b"));
        assert!(!m("a\\*b", "axb"));
    }

    #[test]
    fn classes() {
        assert!(m("PNP0A0[38]:*", "PNP0A03:x"));
        assert!(m("PNP0A0[38]:*", "PNP0A08:"));
        assert!(!m("PNP0A0[38]:*", "PNP0A05:"));
        assert!(m("x[0-9]y", "x5y"));
        assert!(!m("x[!0-9]y", "x5y"));
        assert!(m("x[^0-9]y", "xay"));
        assert!(m("x[]]y", "x]y"));
        assert!(m("x[a-]y", "x-y"));
        // Unterminated: a literal `[`.
        assert!(m("x[ab", "x[ab"));
    }
}
