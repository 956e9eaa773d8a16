//! `TokenFormat::scan` over arbitrary text with checksummed tokens planted in it:
//!
//! - never a panic;
//! - every span lies inside the text, on character boundaries, in order and without overlap,
//!   and its line and column agree with a plain count;
//! - a token reported with a valid checksum passes `matches` (the constant-time verifier), and
//!   one reported with a bad checksum fails it;
//! - every planted token is found, valid, at the span it was planted at.
//!
//! Input: 8 bytes of RNG seed, 1 byte of token count (0 to 3), then per token 2 bytes of
//! position; the rest is the text (lossy UTF-8). A second format, with a 1 or 2 character prefix
//! from `a`, `-` and `_`, exercises overlapping and odd prefixes.
#![no_main]

use keygate::{Found, TokenFormat};
use libfuzzer_sys::fuzz_target;
use rand::SeedableRng;
use rand::rngs::StdRng;

fn check(format: &TokenFormat, text: &str) -> Vec<std::ops::Range<usize>> {
    let mut spans = Vec::new();
    let mut last_end = 0;
    for found in format.scan(text) {
        let span = found.span();
        assert!(
            span.start >= last_end && span.end <= text.len(),
            "{found:?}"
        );
        assert!(text.is_char_boundary(span.start) && text.is_char_boundary(span.end));
        assert_eq!(&text[span.clone()], found.expose_secret());
        assert_eq!(span.len(), format.token_len());
        let before = &text[..span.start];
        assert_eq!(found.line(), before.matches('\n').count() + 1, "{found:?}");
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        assert_eq!(found.column(), before[line_start..].chars().count() + 1);
        assert_eq!(
            found.checksum_ok(),
            format.has_checksum() && bool::from(format.matches(found.expose_secret()))
        );
        // Never the whole token in what is shown.
        let shown = found.to_string();
        assert!(
            shown.chars().count() <= format.prefix().len() + 5,
            "{shown}"
        );
        last_end = span.end;
        spans.push(span);
    }
    spans
}

fuzz_target!(|data: &[u8]| {
    let Some((seed, rest)) = data.split_first_chunk::<8>() else {
        return;
    };
    let Some((&count, rest)) = rest.split_first() else {
        return;
    };
    let count = usize::from(count % 4);
    let Some((positions, rest)) = rest.split_at_checked(2 * count) else {
        return;
    };
    let mut text = String::from_utf8_lossy(rest).into_owned();

    let format = TokenFormat::checksummed();
    let mut rng = StdRng::seed_from_u64(u64::from_le_bytes(*seed));
    // Plant from the end backwards, so that earlier positions stay where they were drawn.
    let mut at: Vec<usize> = positions
        .chunks_exact(2)
        .map(|p| usize::from(u16::from_le_bytes([p[0], p[1]])) % (text.len() + 1))
        .map(|p| {
            (0..=p)
                .rev()
                .find(|&i| text.is_char_boundary(i))
                .unwrap_or(0)
        })
        .collect();
    at.sort_unstable();
    at.dedup();
    let mut tokens = Vec::new();
    for &p in at.iter().rev() {
        let token = format.mint(&mut rng);
        text.insert_str(p, &format!(" {} ", token.expose_secret()));
        tokens.push((p, token));
    }
    // Each later insertion (at a lower position) shifted the earlier-planted ones right.
    let mut planted = Vec::new();
    let mut shift = 0;
    for (p, token) in tokens.iter().rev() {
        let start = p + shift + 1;
        planted.push(start..start + token.expose_secret().len());
        shift += token.expose_secret().len() + 2;
    }

    let spans = check(&format, &text);
    let valid: Vec<_> = format
        .scan(&text)
        .filter(Found::checksum_ok)
        .map(|f| f.span())
        .collect();
    for span in &planted {
        assert!(
            valid.contains(span),
            "planted {span:?} not found in {spans:?}"
        );
    }

    // Odd prefixes: overlapping ("aa" in "aaa"), and ones starting with '-'.
    let prefix: String = seed[..2]
        .iter()
        .take(1 + usize::from(seed[2] & 1))
        .map(|b| ['a', '-', '_'][usize::from(b % 3)])
        .collect();
    if let Ok(odd) = TokenFormat::new(&prefix, 28).and_then(TokenFormat::with_checksum) {
        check(&odd, &text);
        let plain = TokenFormat::new(&prefix, 22).unwrap();
        check(&plain, &text);
    }
});
