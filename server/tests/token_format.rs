//! The reference server mints checksummed tokens (`TokenFormat::checksummed`), so that
//! `keygate scan` recognises them once leaked. Keys created over HTTP are minted the same way;
//! the HTTP tests, which authenticate with them, would fail if they were not.

use keygate::TokenFormat;
use keygate_server::{App, Config};

#[test]
fn bootstrap_tokens_carry_a_valid_checksum() {
    let config = Config {
        demo_accounts: 3,
        ..Config::default()
    };
    let (_state, tokens) = App::bootstrap(config).unwrap();
    assert_eq!(tokens.len(), 3);
    let checksummed = TokenFormat::checksummed();
    for token in &tokens {
        let text = token.expose_secret();
        assert!(bool::from(checksummed.matches(text)), "{token}");
        let found: Vec<_> = checksummed.scan(text).collect();
        assert!(found.len() == 1 && found.iter().all(|f| f.checksum_ok()));
    }
}
