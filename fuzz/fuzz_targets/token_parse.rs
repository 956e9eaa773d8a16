//! Arbitrary bytes through every parser of presented or stored text: never a panic, and only
//! well-formed input accepted.
//!
//! - `TokenFormat::matches` (the default format and one built from the input's first bytes)
//!   agrees with a plain reading of the format: the exact prefix, then exactly `body_len`
//!   ASCII alphanumerics.
//! - `Keyring::authenticate` accepts exactly the one token it holds, and nothing else.
//! - `TokenHash`, `KeyId`, `AccountId`, `ProjectId` and `Timestamp` parse only what prints back
//!   the same way (canonical forms) and round-trip it.
#![no_main]

use std::sync::OnceLock;

use keygate::{
    AccountId, ApiKey, Catalog, KeyId, Keyring, ProjectId, Scope, Timestamp, Token, TokenFormat,
    TokenHash,
};
use libfuzzer_sys::fuzz_target;

/// The plain reading of a token format.
fn well_formed(format: &TokenFormat, input: &[u8]) -> bool {
    input.len() == format.token_len()
        && input.starts_with(format.prefix().as_bytes())
        && input[format.prefix().len()..]
            .iter()
            .all(u8::is_ascii_alphanumeric)
}

/// A format chosen by the input: a prefix of its first 1..=8 bytes, a body length from 22.
fn format_from(data: &[u8]) -> Option<TokenFormat> {
    let (&n, rest) = data.split_first()?;
    let (&len, rest) = rest.split_first()?;
    let prefix_len = usize::from(n % 8) + 1;
    let prefix = std::str::from_utf8(rest.get(..prefix_len)?).ok()?;
    TokenFormat::new(prefix, 20 + usize::from(len % 112)).ok()
}

const HELD: &str = "idc_FuzzFuzzFuzzFuzzFuzzFuzzFuzz0000";

fn keyring() -> &'static Keyring {
    static RING: OnceLock<Keyring> = OnceLock::new();
    RING.get_or_init(|| {
        let catalog = Catalog::read_write_delete();
        let key = ApiKey::new(
            KeyId::from_bytes([1; 16]),
            "fuzz",
            AccountId::from_u64(1),
            Scope::Account,
            catalog.all(),
            TokenHash::of(HELD),
            Timestamp::EPOCH,
        );
        Keyring::from_keys(TokenFormat::default(), [key]).expect("one key")
    })
}

/// `T` parses `text` only if it prints back as `canonical(text)`, and parses its own output.
fn round_trips<T, E>(text: &str, canonical: impl Fn(&str) -> String)
where
    T: core::str::FromStr<Err = E> + core::fmt::Display + PartialEq + core::fmt::Debug,
{
    if let Ok(value) = text.parse::<T>() {
        let shown = value.to_string();
        assert_eq!(shown, canonical(text), "{text:?} parsed as {value:?}");
        assert_eq!(shown.parse::<T>().ok().as_ref(), Some(&value));
    }
}

fuzz_target!(|data: &[u8]| {
    let default = TokenFormat::default();
    let text = String::from_utf8_lossy(data);

    // The format check works on the str's bytes; lossy conversion keeps invalid UTF-8 inputs in.
    assert_eq!(
        bool::from(default.matches(&text)),
        well_formed(&default, text.as_bytes()),
        "{text:?}"
    );
    if let Some(format) = format_from(data) {
        let candidate = String::from_utf8_lossy(data.get(2..).unwrap_or_default());
        assert_eq!(
            bool::from(format.matches(&candidate)),
            well_formed(&format, candidate.as_bytes())
        );
    }

    let now = Timestamp::from_unix_seconds(1_000);
    match keyring().authenticate(&text, now) {
        Ok(key) => {
            assert_eq!(text, HELD);
            assert_eq!(key.id(), KeyId::from_bytes([1; 16]));
        }
        Err(_) => assert_ne!(text, HELD),
    }
    // Redaction never shows more than the prefix and four characters.
    let shown = format!("{:?}", Token::from_presented(text.to_string()));
    assert!(
        shown.chars().count() <= "Token(…)".chars().count() + 17 + 4,
        "{shown}"
    );

    if let Ok(text) = std::str::from_utf8(data) {
        round_trips::<TokenHash, _>(text, str::to_owned);
        round_trips::<KeyId, _>(text, str::to_ascii_lowercase);
        // Ids print integers without leading zeros and UUIDs in lowercase.
        if let Ok(id) = text.parse::<AccountId>() {
            assert_eq!(id.to_string().parse::<AccountId>().ok(), Some(id));
            assert_eq!(
                text.parse::<ProjectId>().map(|p| *p.as_bytes()).ok(),
                Some(*id.as_bytes())
            );
        } else {
            assert!(text.parse::<ProjectId>().is_err());
        }
        if let Ok(t) = text.parse::<Timestamp>() {
            assert_eq!(t.to_string().parse::<Timestamp>().ok(), Some(t), "{text:?}");
        }
    }
});
