//! Tokens: the seed format, uniqueness and uniformity of minted bodies, redaction, and exact-match
//! verification.

mod common;

use std::collections::HashSet;

use keygate::{Catalog, Deny, KeyId, Keyring, Scope, Timestamp, Token, TokenFormat, TokenHash};
use rand::SeedableRng;
use rand::rngs::StdRng;

const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";

/// `^idc_[A-Za-z0-9]{32}$`, written out.
fn matches_seed_regex(text: &str) -> bool {
    text.len() == 36
        && text.starts_with("idc_")
        && text
            .bytes()
            .skip(4)
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_lowercase() || b.is_ascii_digit())
}

fn mint_many(format: &TokenFormat, n: usize, seed: u64) -> Vec<Token> {
    let mut rng = StdRng::seed_from_u64(seed);
    (0..n).map(|_| format.mint(&mut rng)).collect()
}

#[test]
fn the_regex_helper_is_the_regex() {
    assert!(matches_seed_regex("idc_0123456789abcdefghijABCDEFGHIJzZ"));
    for bad in [
        "idc_0123456789abcdefghijABCDEFGHIJz",
        "idc_0123456789abcdefghijABCDEFGHIJzZ9",
        "Idc_0123456789abcdefghijABCDEFGHIJzZ",
        "idc_0123456789abcdefghijABCDEFGHIJz_",
        "idc_0123456789abcdefghijABCDEFGHIJzé",
    ] {
        assert!(!matches_seed_regex(bad), "{bad}");
    }
}

#[test]
fn default_tokens_match_the_seed_format() {
    let format = TokenFormat::default();
    for token in mint_many(&format, 10_000, 1) {
        assert!(matches_seed_regex(token.expose_secret()));
        assert!(bool::from(format.matches(token.expose_secret())));
    }
}

#[test]
fn custom_formats_mint_their_own_shape() {
    let format = TokenFormat::new("sk_live_", 40).unwrap();
    for token in mint_many(&format, 1_000, 2) {
        let text = token.expose_secret();
        assert_eq!(text.len(), 48);
        assert!(text.starts_with("sk_live_"));
        assert!(text[8..].bytes().all(|b| ALPHABET.contains(&b)));
        assert!(bool::from(format.matches(text)));
        assert!(!bool::from(TokenFormat::default().matches(text)));
    }
}

#[test]
fn one_hundred_thousand_tokens_are_distinct() {
    let tokens = mint_many(&TokenFormat::default(), 100_000, 3);
    let distinct: HashSet<&str> = tokens.iter().map(Token::expose_secret).collect();
    assert_eq!(distinct.len(), 100_000);
}

/// Pearson's chi-square statistic of observed counts against a uniform expectation.
fn chi_square(counts: &[u64]) -> f64 {
    let total: u64 = counts.iter().sum();
    let expected = total as f64 / counts.len() as f64;
    counts
        .iter()
        .map(|&c| {
            let d = c as f64 - expected;
            d * d / expected
        })
        .sum()
}

/// The chi-square critical value for 61 degrees of freedom (62 characters) at p = 0.001: a
/// uniform source exceeds it once in a thousand samples. Computed from the regularized incomplete
/// gamma function (scipy's `chi2.ppf(0.999, 61)` gives the same, 100.888).
const CHI_SQUARE_61_DOF_P_0_001: f64 = 100.888;

#[test]
fn body_characters_are_uniform_over_the_62_alphanumerics() {
    let tokens = mint_many(&TokenFormat::default(), 100_000, 4);
    let mut counts = [0u64; 62];
    // Also per position: a bias confined to one position would hide in the overall count.
    let mut by_position = vec![[0u64; 62]; 32];
    for token in &tokens {
        for (position, byte) in token.expose_secret().bytes().skip(4).enumerate() {
            let index = ALPHABET.iter().position(|&a| a == byte).unwrap();
            counts[index] += 1;
            by_position[position][index] += 1;
        }
    }
    let statistic = chi_square(&counts);
    assert!(
        statistic < CHI_SQUARE_61_DOF_P_0_001,
        "chi-square {statistic} over 3.2 million characters"
    );
    // 32 positions at p = 0.001 each: a fixed seed makes this deterministic, and with a uniform
    // source the chance that any position fails is about 3%, so count failures rather than
    // demanding none.
    let failing = by_position
        .iter()
        .filter(|c| chi_square(&c[..]) >= CHI_SQUARE_61_DOF_P_0_001)
        .count();
    assert!(failing <= 1, "{failing} positions look biased");
    // A modulo-biased generator (byte % 62 without rejection) fails the overall test: the check
    // has the power to see the bug it guards against.
    let mut biased = [0u64; 62];
    let mut rng = StdRng::seed_from_u64(5);
    for _ in 0..3_200_000 {
        let byte = rand::RngExt::random::<u8>(&mut rng);
        biased[usize::from(byte % 62)] += 1;
    }
    assert!(chi_square(&biased) > CHI_SQUARE_61_DOF_P_0_001);
}

#[test]
fn debug_and_display_never_show_the_secret() {
    let catalog = Catalog::read_write_delete();
    for token in mint_many(&TokenFormat::default(), 100, 6) {
        let secret = token.expose_secret();
        let body_tail = &secret[8..];
        let key = common::full_key(KeyId::from_bytes([1; 16]), Scope::Account, token.hash());
        let record = key.to_record(&catalog);
        let mut ring = Keyring::default();
        ring.insert(key.clone()).unwrap();
        for shown in [
            format!("{token:?}"),
            token.to_string(),
            format!("{token:#?}"),
            format!("{key:?}"),
            format!("{key:#?}"),
            format!("{record:?}"),
            serde_json::to_string(&record).unwrap(),
            format!("{ring:?}"),
            format!("{:?}", token.hash()),
            token.hash().to_string(),
        ] {
            assert!(!shown.contains(secret), "{shown}");
            assert!(!shown.contains(body_tail), "{shown}");
        }
    }
}

#[test]
fn verification_accepts_the_exact_token_only() {
    let mut rng = StdRng::seed_from_u64(7);
    let format = TokenFormat::default();
    let token = format.mint(&mut rng);
    let secret = token.expose_secret();
    let hash = token.hash();
    let mut ring = Keyring::default();
    ring.insert(common::full_key(
        KeyId::from_bytes([2; 16]),
        Scope::Account,
        hash,
    ))
    .unwrap();
    let now = Timestamp::from_unix_seconds(1);
    assert!(bool::from(hash.verify(secret)));
    assert!(ring.authenticate(secret, now).is_ok());

    // Every position, every other character of the alphabet (and '_' in the prefix).
    let mut changed = secret.as_bytes().to_vec();
    for position in 0..changed.len() {
        let original = changed[position];
        for &replacement in ALPHABET.iter().chain(b"_") {
            if replacement == original {
                continue;
            }
            changed[position] = replacement;
            let text = std::str::from_utf8(&changed).unwrap();
            assert!(!bool::from(hash.verify(text)), "{position}: {text}");
            assert_eq!(ring.authenticate(text, now).err(), Some(Deny::UnknownKey));
        }
        changed[position] = original;
    }
    // Changed in length: a character more or less, at either end.
    for text in [
        &secret[1..],
        &secret[..secret.len() - 1],
        &format!("{secret}A"),
        &format!("A{secret}"),
        &format!(" {secret}"),
        &format!("{secret}\n"),
    ] {
        assert!(!bool::from(hash.verify(text)), "{text:?}");
        assert_eq!(ring.authenticate(text, now).err(), Some(Deny::UnknownKey));
    }
}

#[test]
fn hash_text_is_base64url_without_padding() {
    for token in mint_many(&TokenFormat::default(), 200, 8) {
        let text = token.hash().to_string();
        assert_eq!(text.len(), 43);
        assert!(
            text.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        );
        assert_eq!(text.parse::<TokenHash>().unwrap(), token.hash());
    }
}
