//! The secret a client presents, its format, and the hash a server stores instead of it.
//!
//! A token is a prefix and a random body (`idc_` + 32 alphanumerics by default, IdentityCall's API). The
//! server keeps only its SHA-256 ([`TokenHash`]). A fast hash is the right tool here, unlike for
//! passwords: the body carries about 190 bits of entropy drawn from a cryptographic RNG, so there is
//! nothing to guess and no dictionary to run, and a slow KDF would only slow every request down.
//! What matters is that the hash is preimage-resistant and that comparisons do not leak timing.
//!
//! A format may end its body in a checksum ([`TokenFormat::with_checksum`], after GitHub's 2021
//! token format): the last 6 characters are the CRC-32 of the random characters before them, in
//! base 62. The format check then refuses typos and random strings, and a leaked token is
//! recognised offline by its text alone ([`TokenFormat::scan`]).

use core::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::CryptoRng;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest, Sha256};
use subtle::{Choice, ConstantTimeEq};
use zeroize::Zeroizing;

use crate::ct::{base62_u32, crc32, in_range};

/// How many characters of a token's body [`Token`]'s `Debug` and `Display` reveal.
const SHOWN_BODY_CHARS: usize = 4;
/// The alphabet of token bodies: 62 characters.
const ALPHABET: &[u8; 62] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";

/// A token format was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TokenFormatError {
    /// The prefix must be 1 to 16 characters of `A-Z a-z 0-9 _ -`.
    #[error("invalid token prefix {0:?}: 1 to 16 characters of letters, digits, '_' or '-'")]
    InvalidPrefix(String),
    /// The body length must give at least 128 bits of entropy and stay reasonable.
    #[error("invalid token body length {0}: between 22 and 128 characters")]
    InvalidLength(usize),
    /// A checksummed body needs 22 random characters (128 bits) besides its 6 of checksum.
    #[error("invalid checksummed token body length {0}: between 28 and 128 characters")]
    InvalidChecksumLength(usize),
}

/// The shape of tokens: a fixed prefix and a body of random alphanumerics.
///
/// ```
/// use keygate::TokenFormat;
/// let format = TokenFormat::default();
/// assert_eq!(format.prefix(), "idc_");
/// assert_eq!(format.token_len(), 36);
/// let live = TokenFormat::new("sk_live_", 40)?;
/// assert!(!bool::from(live.matches("idc_0123456789abcdef0123456789abcdef")));
/// # Ok::<(), keygate::TokenFormatError>(())
/// ```
///
/// # Checksums
///
/// [`TokenFormat::with_checksum`] (or [`TokenFormat::checksummed`] for `idc_` + 32) makes the
/// last [`CHECKSUM_LEN`](Self::CHECKSUM_LEN) characters of every minted body the CRC-32 of the
/// random characters before them, in base 62 (alphabet `0-9A-Za-z`, GitHub's order, most
/// significant digit first, left-padded with `0`), and makes [`matches`](Self::matches) require
/// it. The token looks the same (`idc_` + 32 alphanumerics) and keeps 26 random characters:
/// 26 · log2(62) ≈ 154.8 bits. A typo or a random string then fails the format check (about one
/// random string in 2^32 passes it), and a leaked token can be told from noise offline
/// ([`scan`](Self::scan)).
///
/// **It is not the default.** A keyring stores only hashes, so it cannot tell which of its keys'
/// tokens were minted with a checksum; a default that checks one would make every token minted
/// before refuse to authenticate, for every keyring built on `TokenFormat::default()`. New
/// deployments should opt in (the reference server does); a deployment with tokens already out
/// opts in once none of them need to keep working, since the visible format cannot say which
/// tokens are old.
///
/// ```
/// use keygate::TokenFormat;
/// let format = TokenFormat::checksummed();
/// let token = format.mint(&mut rand::rng());
/// assert!(bool::from(format.matches(token.expose_secret())));
/// // One character changed: the checksum no longer matches.
/// let mut typo = token.expose_secret().to_owned();
/// let last = if typo.ends_with('x') { "y" } else { "x" };
/// typo.replace_range(typo.len() - 1.., last);
/// assert!(!bool::from(format.matches(&typo)));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenFormat {
    prefix: String,
    body_len: usize,
    checksum: bool,
}

impl Default for TokenFormat {
    /// `idc_` + 32 alphanumerics: IdentityCall's format, without a checksum (see
    /// [Checksums](TokenFormat#checksums) for why).
    fn default() -> Self {
        Self {
            prefix: "idc_".to_owned(),
            body_len: 32,
            checksum: false,
        }
    }
}

impl TokenFormat {
    /// Shortest body accepted: 22 characters of 62 carry 131 bits.
    pub const MIN_BODY_LEN: usize = 22;
    /// Longest body accepted.
    pub const MAX_BODY_LEN: usize = 128;
    /// Characters of checksum at the end of a checksummed body: a CRC-32 in base 62.
    pub const CHECKSUM_LEN: usize = 6;
    /// Shortest checksummed body: 22 random characters and the checksum.
    pub const MIN_CHECKSUMMED_BODY_LEN: usize = Self::MIN_BODY_LEN + Self::CHECKSUM_LEN;

    /// A format with this prefix and body length.
    pub fn new(prefix: &str, body_len: usize) -> Result<Self, TokenFormatError> {
        let prefix_ok = (1..=16).contains(&prefix.len())
            && prefix
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        if !prefix_ok {
            return Err(TokenFormatError::InvalidPrefix(
                prefix.chars().take(32).collect(),
            ));
        }
        if !(Self::MIN_BODY_LEN..=Self::MAX_BODY_LEN).contains(&body_len) {
            return Err(TokenFormatError::InvalidLength(body_len));
        }
        Ok(Self {
            prefix: prefix.to_owned(),
            body_len,
            checksum: false,
        })
    }

    /// `idc_` + 32 characters, the last 6 a checksum: the default format's look, with 26 random
    /// characters (about 154.8 bits).
    pub fn checksummed() -> Self {
        Self {
            checksum: true,
            ..Self::default()
        }
    }

    /// This format with a checksum: the last [`CHECKSUM_LEN`](Self::CHECKSUM_LEN) body
    /// characters of minted tokens are the checksum of the others, and [`matches`](Self::matches)
    /// requires it. The body length stays the same, so the random part shrinks by 6; a body
    /// shorter than [`MIN_CHECKSUMMED_BODY_LEN`](Self::MIN_CHECKSUMMED_BODY_LEN) is refused.
    pub fn with_checksum(self) -> Result<Self, TokenFormatError> {
        if self.body_len < Self::MIN_CHECKSUMMED_BODY_LEN {
            return Err(TokenFormatError::InvalidChecksumLength(self.body_len));
        }
        Ok(Self {
            checksum: true,
            ..self
        })
    }

    /// Whether bodies end in a checksum.
    pub fn has_checksum(&self) -> bool {
        self.checksum
    }

    /// The prefix, such as `idc_`.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The number of characters after the prefix, the checksum's included.
    pub fn body_len(&self) -> usize {
        self.body_len
    }

    /// The number of random characters: the body less its checksum, if any.
    pub fn random_len(&self) -> usize {
        if self.checksum {
            self.body_len - Self::CHECKSUM_LEN
        } else {
            self.body_len
        }
    }

    /// The whole token's length in bytes.
    pub fn token_len(&self) -> usize {
        self.prefix.len() + self.body_len
    }

    /// Mints a token: the random characters are drawn uniformly from the 62 alphanumerics by
    /// rejection sampling (bytes of 248 and above are redrawn, so there is no modulo bias), then
    /// the checksum, if the format has one, is appended.
    pub fn mint<R: CryptoRng + ?Sized>(&self, rng: &mut R) -> Token {
        let mut text = Zeroizing::new(String::with_capacity(self.token_len()));
        text.push_str(&self.prefix);
        let random_end = self.prefix.len() + self.random_len();
        let mut buf = Zeroizing::new([0u8; 64]);
        while text.len() < random_end {
            rng.fill_bytes(buf.as_mut_slice());
            for &byte in buf.iter() {
                if text.len() == random_end {
                    break;
                }
                // 248 = 4 * 62: keeping only bytes below it makes `byte % 62` exactly uniform.
                if byte < 248
                    && let Some(&c) = ALPHABET.get(usize::from(byte % 62))
                {
                    text.push(char::from(c));
                }
            }
        }
        if self.checksum {
            let check = checksum_of(text.as_bytes().get(self.prefix.len()..).unwrap_or_default());
            for c in check {
                text.push(char::from(c));
            }
        }
        Token { text }
    }

    /// Whether `input` has this format, in time that depends on its length only, never on its
    /// characters: every byte is classified with arithmetic masks and the results are combined
    /// without early exit. (Like `subtle`'s slice comparison, a wrong length returns at once:
    /// lengths are public.) For a checksummed format, the checksum is computed over the random
    /// characters without a branch or a table and compared with `subtle`, whatever the other
    /// checks found.
    pub fn matches(&self, input: &str) -> Choice {
        let input = input.as_bytes();
        if input.len() != self.token_len() {
            return Choice::from(0);
        }
        let (prefix, body) = input.split_at(self.prefix.len());
        let prefix_ok = prefix.ct_eq(self.prefix.as_bytes());
        // One `u32` accumulator instead of a `Choice` per comparison: `subtle` hides every
        // `Choice` from the optimizer, which made this check cost more than the SHA-256 beside
        // it. `black_box` on the accumulator keeps the compiler from adding an early exit.
        let mut bad = 0u32;
        for &c in body {
            let alphanumeric =
                in_range(c, b'0', b'9') | in_range(c, b'A', b'Z') | in_range(c, b'a', b'z');
            bad = core::hint::black_box(bad | (alphanumeric ^ 1));
        }
        // `bad` is 0 or 1.
        let shape_ok = prefix_ok & !Choice::from((bad & 1) as u8);
        if self.checksum {
            // Branching on whether the format has a checksum is fine: the format is public.
            let (random, check) = body.split_at(self.random_len());
            shape_ok & checksum_of(random).ct_eq(check)
        } else {
            shape_ok
        }
    }
}

/// The checksum characters of a body's random characters: their CRC-32 in base 62.
fn checksum_of(random: &[u8]) -> [u8; TokenFormat::CHECKSUM_LEN] {
    base62_u32(crc32(random))
}

/// A plaintext token: the secret itself.
///
/// It is handed out once, when a key is issued or rotated. `Debug` and `Display` show the prefix
/// and the first four body characters only (`idc_AbCd…`), the memory is wiped on drop, and it is not
/// `Clone`. Read it with [`Token::expose_secret`], the one named way out.
pub struct Token {
    text: Zeroizing<String>,
}

impl Token {
    /// Wraps a token a client presented, so that it is wiped and redacted like a minted one.
    pub fn from_presented(text: String) -> Self {
        Self {
            text: Zeroizing::new(text),
        }
    }

    /// The plaintext. The only way to read the secret: call it where it is sent to its owner.
    pub fn expose_secret(&self) -> &str {
        &self.text
    }

    /// The hash a record stores.
    pub fn hash(&self) -> TokenHash {
        TokenHash::of(self.expose_secret())
    }

    fn redacted(&self) -> Redacted<'_> {
        Redacted(&self.text)
    }
}

/// A token shown as its prefix and first four body characters, for `Debug`, `Display`, and what
/// [`TokenFormat::scan`] finds.
pub(crate) struct Redacted<'a>(pub(crate) &'a str);

impl fmt::Display for Redacted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The prefix is what a format's prefix can be: at most 16 ASCII alphanumerics,
        // '-' or '_' ending in '_' (the last such '_' within the first 17 characters);
        // a string without one has no prefix. After it, at most 4 characters, whatever
        // string was presented.
        let prefix_len = self
            .0
            .char_indices()
            .take(17)
            .take_while(|(_, c)| c.is_ascii_alphanumeric() || *c == '_' || *c == '-')
            .filter(|(_, c)| *c == '_')
            .last()
            .map_or(0, |(i, _)| i + 1);
        let (prefix, body) = self.0.split_at(prefix_len);
        let shown: String = body.chars().take(SHOWN_BODY_CHARS).collect();
        write!(f, "{prefix}{shown}…")
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Token({})", self.redacted())
    }
}

impl fmt::Display for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.redacted(), f)
    }
}

/// The SHA-256 of a token: what records store and keyrings index. Shown as base64url without
/// padding.
///
/// ```
/// use keygate::TokenHash;
/// let hash = TokenHash::of("idc_0123456789abcdef0123456789abcdef");
/// assert!(bool::from(hash.verify("idc_0123456789abcdef0123456789abcdef")));
/// assert!(!bool::from(hash.verify("idc_0123456789abcdef0123456789abcdeF")));
/// assert_eq!(hash.to_string().len(), 43);
/// assert_eq!(hash.to_string().parse::<TokenHash>()?, hash);
/// # Ok::<(), keygate::TokenHashError>(())
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TokenHash([u8; 32]);

/// A stored token hash was not 43 characters of base64url.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid token hash: expected 43 characters of unpadded base64url (SHA-256)")]
pub struct TokenHashError;

impl TokenHash {
    /// Hashes a presented or minted token.
    pub fn of(token: &str) -> Self {
        Self(Sha256::digest(token.as_bytes()).into())
    }

    /// From raw digest bytes.
    pub const fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// The raw digest bytes.
    pub const fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Whether `token` hashes to this, compared in constant time.
    pub fn verify(&self, token: &str) -> Choice {
        self.ct_eq(&Self::of(token))
    }
}

impl ConstantTimeEq for TokenHash {
    fn ct_eq(&self, other: &Self) -> Choice {
        self.0.ct_eq(&other.0)
    }
}

impl subtle::ConditionallySelectable for TokenHash {
    fn conditional_select(a: &Self, b: &Self, choice: Choice) -> Self {
        let mut out = [0u8; 32];
        for (o, (x, y)) in out.iter_mut().zip(a.0.iter().zip(b.0.iter())) {
            *o = u8::conditional_select(x, y, choice);
        }
        Self(out)
    }
}

impl fmt::Display for TokenHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&URL_SAFE_NO_PAD.encode(self.0))
    }
}

impl fmt::Debug for TokenHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TokenHash({self})")
    }
}

impl core::str::FromStr for TokenHash {
    type Err = TokenHashError;
    fn from_str(s: &str) -> Result<Self, TokenHashError> {
        if s.len() != 43 {
            return Err(TokenHashError);
        }
        let bytes = URL_SAFE_NO_PAD.decode(s).map_err(|_| TokenHashError)?;
        <[u8; 32]>::try_from(bytes.as_slice())
            .map(Self)
            .map_err(|_| TokenHashError)
    }
}

impl Serialize for TokenHash {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for TokenHash {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn default_tokens_have_the_seed_format() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let format = TokenFormat::default();
        for _ in 0..1000 {
            let token = format.mint(&mut rng);
            let text = token.expose_secret();
            assert_eq!(text.len(), 36);
            assert!(text.starts_with("idc_"));
            assert!(text[4..].bytes().all(|b| b.is_ascii_alphanumeric()));
            assert!(bool::from(format.matches(text)));
        }
    }

    #[test]
    fn format_check_rejects_each_kind_of_wrong_input() {
        let format = TokenFormat::default();
        let good = "idc_0123456789abcdefABCDEF0123456789";
        assert!(bool::from(format.matches(good)));
        for bad in [
            "",
            "idc_",
            "idc_0123456789abcdefABCDEF012345678",
            "idc_0123456789abcdefABCDEF01234567890",
            "idd_0123456789abcdefABCDEF0123456789",
            "idc-0123456789abcdefABCDEF0123456789",
            "idc_0123456789abcdefABCDEF012345678_",
            "idc_0123456789abcdefABCDEF012345678/",
            "idc_:123456789abcdefABCDEF0123456789",
            "idc_@123456789abcdefABCDEF0123456789",
            "idc_[123456789abcdefABCDEF0123456789",
            "idc_`123456789abcdefABCDEF0123456789",
            "idc_{123456789abcdefABCDEF0123456789",
        ] {
            assert!(!bool::from(format.matches(bad)), "{bad:?}");
        }
    }

    #[test]
    fn in_range_and_matches_agree_with_the_plain_definition_on_every_byte() {
        for c in 0..=255u8 {
            assert_eq!(in_range(c, b'0', b'9') == 1, c.is_ascii_digit(), "{c}");
            assert_eq!(in_range(c, b'A', b'Z') == 1, c.is_ascii_uppercase(), "{c}");
            assert_eq!(in_range(c, b'a', b'z') == 1, c.is_ascii_lowercase(), "{c}");
        }
        let format = TokenFormat::new("k_", 22).unwrap();
        for c in 0..=127u8 {
            for position in [2, 12, 23] {
                let mut text = *b"k_aaaaaaaaaaaaaaaaaaaaaa";
                text[position] = c;
                let text = core::str::from_utf8(&text).unwrap();
                assert_eq!(
                    bool::from(format.matches(text)),
                    c.is_ascii_alphanumeric(),
                    "{text:?}"
                );
            }
        }
    }

    #[test]
    fn token_debug_and_display_are_redacted() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        let token = TokenFormat::default().mint(&mut rng);
        let secret = token.expose_secret().to_owned();
        for shown in [format!("{token:?}"), token.to_string(), format!("{token}")] {
            assert!(!shown.contains(&secret[4..]), "{shown}");
            assert!(shown.contains(&secret[..8]), "{shown}");
        }
    }

    #[test]
    fn format_bounds() {
        assert!(TokenFormat::new("sk_live_", 32).is_ok());
        assert!(TokenFormat::new("", 32).is_err());
        assert!(TokenFormat::new("a b", 32).is_err());
        assert!(TokenFormat::new("idc_", 21).is_err());
        assert!(TokenFormat::new("idc_", 129).is_err());
    }

    #[test]
    fn hash_text_round_trip_and_errors() {
        let h = TokenHash::of("x");
        assert_eq!(h.to_string().parse::<TokenHash>().unwrap(), h);
        assert!("".parse::<TokenHash>().is_err());
        assert!("!".repeat(43).parse::<TokenHash>().is_err());
        let json = serde_json::to_string(&h).unwrap();
        assert_eq!(serde_json::from_str::<TokenHash>(&json).unwrap(), h);
    }
}
