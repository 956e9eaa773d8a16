//! Checksummed tokens (`TokenFormat::with_checksum`) and `TokenFormat::scan`:
//! - every minted token passes the format check, and every single-character substitution in its
//!   body fails it (CRC-32 detects every error confined to 32 bits, and a one-byte change is one);
//! - random strings of the right shape fail it, but for one in 62^6 (about 2^-35.7);
//! - a keyring on a checksummed format refuses tokens minted without one (why it is not the
//!   default), and accepts its own;
//! - `scan` finds tokens planted in random text, at their spans, with their checksums verified.

#![expect(
    clippy::indexing_slicing,
    reason = "a broken test fixture should stop the test loudly"
)]

mod common;

use keygate::{
    AccountId, ApiKey, Catalog, KeyId, Keyring, Scope, Timestamp, TokenFormat, TokenFormatError,
    TokenHash,
};
use proptest::prelude::*;
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

const ALNUM: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

fn mint(format: &TokenFormat, seed: u64) -> String {
    format
        .mint(&mut StdRng::seed_from_u64(seed))
        .expose_secret()
        .to_owned()
}

/// The checksum, recomputed independently with the plain (branching) CRC-32 and base 62 in
/// `0-9A-Za-z`, agrees with what `mint` appends and what `matches` accepts.
#[test]
fn the_checksum_is_crc32_of_the_random_part_in_base62() {
    assert_eq!(plain_crc32(b"123456789"), 0xCBF4_3926);
    let format = TokenFormat::checksummed();
    for seed in 0..200 {
        let minted = mint(&format, seed);
        let body = &minted[4..];
        assert_eq!(
            body[26..],
            plain_checksum(&body.as_bytes()[..26]),
            "{minted}"
        );
    }
    // Built by hand from 26 random characters: accepted.
    let random = "abcdefghijklmnopqrstuvwxyz";
    let token = format!("idc_{random}{}", plain_checksum(random.as_bytes()));
    assert!(bool::from(format.matches(&token)), "{token}");
}

/// CRC-32 with the usual table-free loop, as zlib documents it.
fn plain_crc32(bytes: &[u8]) -> u32 {
    let mut crc = 0xFFFF_FFFFu32;
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

fn plain_checksum(random: &[u8]) -> String {
    let mut value = plain_crc32(random);
    let mut digits = Vec::new();
    for _ in 0..6 {
        digits.push(char::from(ALNUM[(value % 62) as usize]));
        value /= 62;
    }
    digits.iter().rev().collect()
}

#[test]
fn checksummed_formats_keep_128_random_bits() {
    let format = TokenFormat::checksummed();
    assert_eq!(format.prefix(), "idc_");
    assert_eq!((format.body_len(), format.random_len()), (32, 26));
    assert!(format.has_checksum() && !TokenFormat::default().has_checksum());
    assert_eq!(
        TokenFormat::new("sk_", 27).unwrap().with_checksum(),
        Err(TokenFormatError::InvalidChecksumLength(27))
    );
    let short = TokenFormat::new("sk_", 28)
        .unwrap()
        .with_checksum()
        .unwrap();
    assert_eq!(short.random_len(), 22);
    let token = mint(&short, 3);
    assert_eq!(token.len(), 31);
    assert!(bool::from(short.matches(&token)));
}

#[test]
fn random_strings_of_the_right_shape_are_refused() {
    let format = TokenFormat::checksummed();
    let mut rng = StdRng::seed_from_u64(9);
    // Each passes with probability 62^-6; 100,000 of them all fail but for about 2e-6.
    for _ in 0..100_000 {
        let body: String = (0..32)
            .map(|_| char::from(ALNUM[rng.random_range(0..62)]))
            .collect();
        let text = format!("idc_{body}");
        assert!(bool::from(TokenFormat::default().matches(&text)));
        assert!(!bool::from(format.matches(&text)), "{text}");
    }
}

#[test]
fn a_checksummed_keyring_refuses_tokens_minted_without_a_checksum() {
    let catalog = Catalog::read_write_delete();
    let now = Timestamp::from_unix_seconds(1_000);
    let old = mint(&TokenFormat::default(), 5);
    let new = mint(&TokenFormat::checksummed(), 5);
    let key = |n: u8, token: &str| {
        ApiKey::new(
            KeyId::from_bytes([n; 16]),
            "k",
            AccountId::from_u64(1),
            Scope::Account,
            catalog.all(),
            TokenHash::of(token),
            Timestamp::EPOCH,
        )
    };
    let checked =
        Keyring::from_keys(TokenFormat::checksummed(), [key(1, &old), key(2, &new)]).unwrap();
    assert!(checked.authenticate(&old, now).is_err());
    assert_eq!(
        checked.authenticate(&new, now).map(|k| k.id()).ok(),
        Some(KeyId::from_bytes([2; 16]))
    );
    // A keyring on the default format keeps accepting both: the checksum is only characters.
    let plain = Keyring::from_keys(TokenFormat::default(), [key(1, &old), key(2, &new)]).unwrap();
    assert!(plain.authenticate(&old, now).is_ok());
    assert!(plain.authenticate(&new, now).is_ok());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(common::cases(512)))]

    #[test]
    fn minted_tokens_pass_and_every_substitution_fails(
        seed in any::<u64>(),
        prefix in "[a-z]{1,8}_",
        extra in 0usize..40,
        at in any::<prop::sample::Index>(),
        replacement in any::<prop::sample::Index>(),
    ) {
        let format = TokenFormat::new(&prefix, 28 + extra).unwrap().with_checksum().unwrap();
        let token = mint(&format, seed);
        prop_assert_eq!(token.len(), format.token_len());
        prop_assert!(bool::from(format.matches(&token)));
        // One body character replaced by a different alphanumeric.
        let at = prefix.len() + at.index(format.body_len());
        let old = token.as_bytes()[at];
        let others: Vec<u8> = ALNUM.iter().copied().filter(|&c| c != old).collect();
        let mut changed = token.clone().into_bytes();
        changed[at] = *replacement.get(&others);
        let changed = String::from_utf8(changed).unwrap();
        prop_assert!(!bool::from(format.matches(&changed)), "{} -> {}", token, changed);
    }

    #[test]
    fn scan_finds_tokens_planted_in_random_text(
        filler in prop::collection::vec(any::<String>(), 1..6),
        seeds in prop::collection::vec(any::<u64>(), 0..5),
    ) {
        let format = TokenFormat::checksummed();
        let tokens: Vec<String> = seeds.iter().map(|&s| mint(&format, s)).collect();
        // Filler, a space, a token, a space, filler...: the spaces are the word boundaries.
        let mut text = String::new();
        let mut spans = Vec::new();
        for (i, piece) in filler.iter().enumerate() {
            text.push_str(piece);
            if let Some(token) = tokens.get(i) {
                text.push(' ');
                spans.push(text.len()..text.len() + token.len());
                text.push_str(token);
                text.push(' ');
            }
        }
        let found: Vec<_> = format.scan(&text).filter(|f| f.checksum_ok()).collect();
        let found_spans: Vec<_> = found.iter().map(keygate::Found::span).collect();
        // Random filler could hold a checksummed token only by a 2^-35 accident.
        let planted = tokens.len().min(filler.len());
        prop_assert_eq!(found_spans, spans[..planted].to_vec());
        for f in &found {
            let line = text[..f.span().start].matches('\n').count() + 1;
            prop_assert_eq!(f.line(), line);
            prop_assert!(bool::from(format.matches(f.expose_secret())));
        }
    }
}
