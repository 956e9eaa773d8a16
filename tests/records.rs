//! Stored records: serde round trips, and arbitrary input never panics (it is an error or a
//! value, nothing else).

#![expect(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    reason = "test helpers and proptest bodies: a failure should fail the test at once"
)]

use std::time::Duration;

use keygate::{
    AccountId, ApiKey, ApiKeyRecord, Catalog, KeyId, KeyState, ProjectId, RateLimit,
    RateLimitState, RetiredSecret, Scope, Timestamp, TokenFormat, TokenHash, Usage,
};
use proptest::prelude::*;
use rand::SeedableRng;
use rand::rngs::StdRng;
use serde::Serialize;
use serde::de::DeserializeOwned;

/// A record with every optional field set.
fn full_record() -> ApiKeyRecord {
    let mut rng = StdRng::seed_from_u64(1);
    let catalog = Catalog::read_write_delete();
    let token = TokenFormat::default().mint(&mut rng);
    let created: Timestamp = "2026-04-15T10:00:00Z".parse().unwrap();
    let key = ApiKey::new(
        KeyId::random(&mut rng),
        "Production Backend",
        AccountId::from_u64(7),
        Scope::Project(ProjectId::from_u64(42)),
        catalog.expand(["read", "write"]).unwrap(),
        token.hash(),
        created,
    )
    .with_expiry(created + Duration::from_secs(86_400 * 90))
    .with_rate_limit(
        RateLimit::per_period(100, 60)
            .unwrap()
            .with_burst(20)
            .unwrap(),
    );
    let mut record = key.to_record(&catalog);
    record.retired_secret = Some(RetiredSecret {
        token_hash: TokenHash::of("idc_old"),
        valid_until: created + Duration::from_millis(1_500),
    });
    record.revoked_at = Some(created + Duration::from_secs(3_600));
    record.role = Some("admin".into());
    record.tags = vec!["prod".into(), "backend".into()];
    record.comment = Some("rotated quarterly".into());
    record.created_by = Some("user_123".into());
    record
}

fn busy_usage() -> Usage {
    let mut usage = Usage::default();
    let t: Timestamp = "2026-04-15T10:00:00.123456Z".parse().unwrap();
    for (i, status) in [200, 201, 404, 429, 500, 200].into_iter().enumerate() {
        usage.record(
            ["GET /recordings", "POST /recordings"][i % 2],
            status,
            t + Duration::from_secs(i as u64),
        );
    }
    usage
}

fn round_trip<T: Serialize + DeserializeOwned + PartialEq + core::fmt::Debug>(value: &T) {
    let json = serde_json::to_string(value).unwrap();
    let back: T = serde_json::from_str(&json).unwrap();
    assert_eq!(&back, value, "{json}");
    let pretty = serde_json::to_string_pretty(value).unwrap();
    assert_eq!(&serde_json::from_str::<T>(&pretty).unwrap(), value);
}

#[test]
fn api_key_records_round_trip() {
    let catalog = Catalog::read_write_delete();
    let record = full_record();
    round_trip(&record);
    let key = ApiKey::from_record(record.clone(), &catalog).unwrap();
    assert_eq!(key.to_record(&catalog), record);
    // The minimal record too, with every optional field absent.
    let minimal = ApiKey::new(
        KeyId::from_bytes([9; 16]),
        "x",
        AccountId::from_u64(1),
        Scope::Account,
        catalog.expand(["read"]).unwrap(),
        TokenHash::of("idc_y"),
        Timestamp::EPOCH,
    )
    .to_record(&catalog);
    round_trip(&minimal);
    let json = serde_json::to_value(&minimal).unwrap();
    for absent in ["retired_secret", "revoked_at", "rate_limit", "role", "tags"] {
        assert!(json.get(absent).is_none(), "{absent} in {json}");
    }
}

#[test]
fn records_use_rfc3339_and_base64url() {
    let json = serde_json::to_value(full_record()).unwrap();
    assert_eq!(json["created_at"], "2026-04-15T10:00:00Z");
    assert_eq!(
        json["retired_secret"]["valid_until"],
        "2026-04-15T10:00:01.5Z"
    );
    let hash = json["token_hash"].as_str().unwrap();
    assert_eq!(hash.len(), 43);
    assert!(!hash.contains('=') && !hash.contains('+') && !hash.contains('/'));
}

#[test]
fn usage_and_key_state_round_trip() {
    let usage = busy_usage();
    round_trip(&usage);
    round_trip(&Usage::default());
    let json = serde_json::to_value(&usage).unwrap();
    assert_eq!(json["total_requests"], 6);
    assert_eq!(json["requests_by_endpoint"]["GET /recordings"], 3);
    assert_eq!(json["errors_by_status_class"]["4xx"], 2);
    assert_eq!(json["errors_by_status_class"]["5xx"], 1);
    assert_eq!(json["last_used_at"], "2026-04-15T10:00:05.123456Z");
    let mut rate_limit = RateLimitState::default();
    let limit = RateLimit::per_period(1, 60).unwrap();
    limit
        .check(&mut rate_limit, Timestamp::from_unix_seconds(5))
        .unwrap();
    round_trip(&KeyState { usage, rate_limit });
    // Stored state from before a field existed still loads.
    assert_eq!(
        serde_json::from_str::<KeyState>("{}").unwrap(),
        KeyState::default()
    );
}

#[test]
fn catalogs_round_trip() {
    round_trip(&Catalog::read_write_delete());
    let catalog: Catalog = serde_json::from_str(
        r#"{"permissions": ["agents:read", "agents:write", "billing:read"],
            "roles": [{"name": "viewer", "permissions": ["*:read"]},
                      {"name": "owner", "permissions": ["*"]}]}"#,
    )
    .unwrap();
    round_trip(&catalog);
}

/// Every record type: parse `bytes`, and if that worked, do what a loader would do next.
fn parse_everything(bytes: &[u8]) {
    let catalog = Catalog::read_write_delete();
    if let Ok(record) = serde_json::from_slice::<ApiKeyRecord>(bytes)
        && let Ok(key) = ApiKey::from_record(record, &catalog)
    {
        let _ = serde_json::to_string(&key.to_record(&catalog));
        let _ = key.expires_within(Timestamp::EPOCH, Duration::from_secs(u64::MAX));
    }
    let _ = serde_json::from_slice::<Usage>(bytes).map(|mut u| {
        u.record("GET /", 500, Timestamp::MAX);
        u.error_rate()
    });
    let _ = serde_json::from_slice::<KeyState>(bytes);
    let _ = serde_json::from_slice::<Catalog>(bytes);
    let _ = serde_json::from_slice::<RetiredSecret>(bytes);
    let _ = serde_json::from_slice::<RateLimit>(bytes);
    let _ = serde_json::from_slice::<RateLimitState>(bytes);
    let _ = serde_json::from_slice::<Scope>(bytes);
    let _ = serde_json::from_slice::<KeyId>(bytes);
    let _ = serde_json::from_slice::<AccountId>(bytes);
    let _ = serde_json::from_slice::<ProjectId>(bytes);
    let _ = serde_json::from_slice::<TokenHash>(bytes);
    if let Ok(t) = serde_json::from_slice::<Timestamp>(bytes) {
        let _ = serde_json::to_string(&t);
        let _ = t.to_string();
    }
}

/// One edit of a valid record's text: the inputs most likely to reach deep into a parser.
#[derive(Debug, Clone)]
enum Edit {
    Replace(usize, u8),
    Insert(usize, u8),
    Delete(usize),
    Splice(usize, String),
}

fn apply(text: &str, edits: &[Edit]) -> Vec<u8> {
    let mut bytes = text.as_bytes().to_vec();
    for edit in edits {
        let len = bytes.len().max(1);
        match edit {
            Edit::Replace(i, b) => {
                if let Some(slot) = bytes.get_mut(i % len) {
                    *slot = *b;
                }
            }
            Edit::Insert(i, b) => bytes.insert(i % (bytes.len() + 1), *b),
            Edit::Delete(i) => {
                if !bytes.is_empty() {
                    bytes.remove(i % len);
                }
            }
            Edit::Splice(i, s) => {
                let at = i % (bytes.len() + 1);
                bytes.splice(at..at, s.bytes());
            }
        }
    }
    bytes
}

fn edit() -> impl Strategy<Value = Edit> {
    let interesting = prop_oneof![
        Just("null".to_owned()),
        Just("\"\"".to_owned()),
        Just("-1".to_owned()),
        Just("18446744073709551616".to_owned()),
        Just("1e400".to_owned()),
        Just("\"9999-12-31T23:59:59.999999999Z\"".to_owned()),
        Just("\"-9999-01-01T00:00:00Z\"".to_owned()),
        Just("\"00000000-0000-0000-0000-000000000000\"".to_owned()),
        Just("[".repeat(64)),
        Just("\"\\ud800\"".to_owned()),
        "[{}\\[\\]\":,0-9a-zA-Z_\\-.+ ]{0,16}",
    ];
    prop_oneof![
        (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Edit::Replace(i, b)),
        (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Edit::Insert(i, b)),
        any::<usize>().prop_map(Edit::Delete),
        (any::<usize>(), interesting).prop_map(|(i, s)| Edit::Splice(i, s)),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        parse_everything(&bytes);
    }

    #[test]
    fn json_ish_strings_never_panic(text in "[{}\\[\\]\":,0-9a-zA-Z_\\-.+ ]{0,256}") {
        parse_everything(text.as_bytes());
    }

    #[test]
    fn edited_valid_records_never_panic(
        base in 0usize..4,
        edits in proptest::collection::vec(edit(), 1..6),
    ) {
        let texts = [
            serde_json::to_string(&full_record()).unwrap(),
            serde_json::to_string(&busy_usage()).unwrap(),
            serde_json::to_string(&KeyState::default()).unwrap(),
            serde_json::to_string(&Catalog::read_write_delete()).unwrap(),
        ];
        parse_everything(&apply(&texts[base], &edits));
    }

    #[test]
    fn usage_round_trips_for_any_traffic(
        requests in proptest::collection::vec(("[a-z/ ]{0,12}", 100u16..700, any::<i32>()), 0..64),
    ) {
        let mut usage = Usage::default();
        for (endpoint, status, second) in &requests {
            usage.record(endpoint, *status, Timestamp::from_unix_seconds(i64::from(*second)));
        }
        let json = serde_json::to_string(&usage).unwrap();
        prop_assert_eq!(serde_json::from_str::<Usage>(&json).unwrap(), usage.clone());
        prop_assert_eq!(usage.total_requests(), requests.len() as u64);
        prop_assert!(usage.total_errors() <= usage.total_requests());
    }
}
