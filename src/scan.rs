//! Finding tokens in text (logs, diffs, source files) and telling leaked ones from noise by their
//! checksum.

use core::fmt;
use core::ops::Range;

use crate::token::{Redacted, TokenFormat};

/// A token [`TokenFormat::scan`] found: where it is, and whether its checksum holds.
///
/// `Debug` and `Display` show the prefix and four body characters only, as [`Token`](crate::Token)
/// does; [`Found::expose_secret`] is the one way to the whole text.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Found<'a> {
    token: &'a str,
    start: usize,
    line: usize,
    column: usize,
    checksum_ok: bool,
}

impl<'a> Found<'a> {
    /// The token's byte range in the scanned text (on character boundaries).
    pub fn span(&self) -> Range<usize> {
        self.start..self.start + self.token.len()
    }

    /// The line it starts on, from 1 (lines end at `\n`).
    pub fn line(&self) -> usize {
        self.line
    }

    /// The column it starts at, from 1, in characters (Unicode scalar values) of its line.
    pub fn column(&self) -> usize {
        self.column
    }

    /// Whether its last characters are the checksum of the others: a token this format minted
    /// (or one of the one-in-2^32 strings that look like one). Always `false` for a format
    /// without a checksum, where nothing tells a token from any other string of its shape.
    pub fn checksum_ok(&self) -> bool {
        self.checksum_ok
    }

    /// The token's whole text. Call it where the secret is needed (to revoke the key by its
    /// hash, say), never to show it.
    pub fn expose_secret(&self) -> &'a str {
        self.token
    }

    /// The token as its prefix and first four body characters: `idc_AbCd…`.
    pub fn redacted(&self) -> impl fmt::Display + 'a {
        Redacted(self.token)
    }
}

impl fmt::Debug for Found<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Found")
            .field("token", &format_args!("{}", self.redacted()))
            .field("span", &self.span())
            .field("line", &self.line)
            .field("column", &self.column)
            .field("checksum_ok", &self.checksum_ok)
            .finish()
    }
}

/// The redacted token.
impl fmt::Display for Found<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.redacted(), f)
    }
}

/// The iterator [`TokenFormat::scan`] returns: each candidate token in order of position.
#[derive(Debug, Clone)]
pub struct Scan<'a> {
    format: &'a TokenFormat,
    text: &'a str,
    /// Where the search for the next prefix resumes, in bytes.
    next: usize,
    /// Line and column bookkeeping, advanced only as far as the last token found.
    counted_to: usize,
    line: usize,
    column: usize,
}

impl TokenFormat {
    /// Every token of this shape in `text`, in order: the prefix, not preceded by an ASCII letter,
    /// digit or `_`; then exactly [`body_len`](Self::body_len) ASCII alphanumerics, not followed
    /// by another letter, digit or `_`. Each comes with its position and whether its checksum
    /// holds ([`Found::checksum_ok`]); a token cut short or run on into more characters is not
    /// one and is skipped.
    ///
    /// This is for text at rest (logs, commits), not for requests: it branches on the text, and
    /// the checksum it reports is the answer of [`matches`](Self::matches).
    ///
    /// ```
    /// use keygate::TokenFormat;
    /// let format = TokenFormat::checksummed();
    /// let token = format.mint(&mut rand::rng());
    /// let log = format!("GET /projects\nAuthorization: Bearer {}\n", token.expose_secret());
    /// let found: Vec<_> = format.scan(&log).collect();
    /// assert_eq!(found.len(), 1);
    /// assert!(found[0].checksum_ok());
    /// assert_eq!((found[0].line(), found[0].column()), (2, 23));
    /// assert_eq!(&log[found[0].span()], token.expose_secret());
    /// assert!(!found[0].to_string().contains(&token.expose_secret()[8..]));
    /// ```
    pub fn scan<'a>(&'a self, text: &'a str) -> Scan<'a> {
        Scan {
            format: self,
            text,
            next: 0,
            counted_to: 0,
            line: 1,
            column: 1,
        }
    }
}

/// ASCII letters, digits and `_`: what may not touch a token on either side.
fn is_word(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || byte == b'_'
}

impl<'a> Scan<'a> {
    /// Moves the line and column count up to byte `to` (a character boundary, at or after the
    /// last one counted to).
    fn count_to(&mut self, to: usize) {
        let bytes = self
            .text
            .as_bytes()
            .get(self.counted_to..to)
            .unwrap_or_default();
        for &byte in bytes {
            if byte == b'\n' {
                self.line += 1;
                self.column = 1;
            } else if byte & 0xC0 != 0x80 {
                // Not a UTF-8 continuation byte: a new character.
                self.column += 1;
            }
        }
        self.counted_to = to;
    }

    /// The token starting at `start`, if the text there has this format's shape.
    fn candidate(&self, start: usize) -> Option<&'a str> {
        let bytes = self.text.as_bytes();
        let end = start + self.format.token_len();
        if start
            .checked_sub(1)
            .and_then(|before| bytes.get(before))
            .is_some_and(|&b| is_word(b))
        {
            return None;
        }
        let body = bytes.get(start + self.format.prefix().len()..end)?;
        if !body.iter().all(u8::is_ascii_alphanumeric) {
            return None;
        }
        if bytes.get(end).is_some_and(|&b| is_word(b)) {
            return None;
        }
        // All ASCII from `start` to `end`, so both are character boundaries.
        self.text.get(start..end)
    }
}

impl<'a> Iterator for Scan<'a> {
    type Item = Found<'a>;

    fn next(&mut self) -> Option<Found<'a>> {
        let prefix = self.format.prefix().as_bytes();
        let first = *prefix.first()?;
        loop {
            let rest = self.text.as_bytes().get(self.next..)?;
            let at = rest
                .iter()
                .enumerate()
                .filter(|&(_, &b)| b == first)
                .map(|(i, _)| i)
                .find(|&i| rest.get(i..).is_some_and(|r| r.starts_with(prefix)));
            let Some(at) = at else {
                self.next = self.text.len();
                return None;
            };
            let start = self.next + at;
            let Some(token) = self.candidate(start) else {
                self.next = start + 1;
                continue;
            };
            self.next = start + token.len();
            self.count_to(start);
            let checksum_ok = self.format.has_checksum() && bool::from(self.format.matches(token));
            return Some(Found {
                token,
                start,
                line: self.line,
                column: self.column,
                checksum_ok,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    fn minted(seed: u64) -> String {
        let mut rng = StdRng::seed_from_u64(seed);
        TokenFormat::checksummed()
            .mint(&mut rng)
            .expose_secret()
            .to_owned()
    }

    /// (line, column, checksum_ok, text) of everything found.
    fn scan(text: &str) -> Vec<(usize, usize, bool, &str)> {
        static FORMAT: std::sync::LazyLock<TokenFormat> =
            std::sync::LazyLock::new(TokenFormat::checksummed);
        FORMAT
            .scan(text)
            .map(|f| (f.line(), f.column(), f.checksum_ok(), f.expose_secret()))
            .collect()
    }

    #[test]
    fn finds_planted_tokens_with_line_and_column() {
        let (a, b) = (minted(1), minted(2));
        let text = format!("first line\n  token={a} and \"{b}\"\n");
        let found = scan(&text);
        assert_eq!(
            found,
            vec![(2, 9, true, a.as_str()), (2, 51, true, b.as_str())]
        );
    }

    #[test]
    fn columns_count_characters_not_bytes() {
        let a = minted(3);
        let text = format!("é→ {a}");
        assert_eq!(scan(&text), vec![(1, 4, true, a.as_str())]);
    }

    #[test]
    fn a_bad_checksum_is_reported_as_such() {
        let mut typo = minted(4);
        let swapped = if typo.ends_with('A') { "B" } else { "A" };
        typo.replace_range(typo.len() - 1.., swapped);
        assert_eq!(scan(&typo), vec![(1, 1, false, typo.as_str())]);
        // A format without a checksum never calls a token verified.
        let plain = TokenFormat::default();
        let good = minted(5);
        let found: Vec<_> = plain.scan(&good).collect();
        assert_eq!(found.len(), 1);
        assert!(!found.iter().any(Found::checksum_ok));
    }

    #[test]
    fn tokens_must_stand_on_word_boundaries() {
        let a = minted(6);
        for text in [
            format!("x{a}"),
            format!("_{a}"),
            format!("9{a}"),
            format!("{a}x"),
            format!("{a}_"),
            a[..a.len() - 1].to_owned(),
        ] {
            assert_eq!(scan(&text), vec![], "{text}");
        }
        for text in [
            format!("-{a}-"),
            format!("({a})"),
            format!("'{a}'"),
            format!("/{a}."),
            format!("é{a}é"),
        ] {
            assert_eq!(scan(&text).len(), 1, "{text}");
        }
    }

    #[test]
    fn a_rejected_candidate_does_not_hide_the_next_one() {
        let a = minted(7);
        // A prefix with a space in its body, a doubled prefix (which touches the token's own),
        // then the token.
        let text = format!("idc_ idc_{a} {a}");
        assert_eq!(scan(&text), vec![(1, 47, true, a.as_str())]);
    }

    #[test]
    fn shown_tokens_are_redacted() {
        let format = TokenFormat::checksummed();
        let a = minted(8);
        let found = format.scan(&a).next().unwrap();
        for shown in [found.to_string(), format!("{found:?}")] {
            assert!(!shown.contains(&a[8..]), "{shown}");
            assert!(shown.contains(&a[..8]), "{shown}");
        }
    }

    #[test]
    fn empty_and_prefix_only_text_finds_nothing() {
        for text in ["", "i", "idc", "idc_", "idc_idc_idc_"] {
            assert_eq!(scan(text), vec![], "{text}");
        }
    }
}
