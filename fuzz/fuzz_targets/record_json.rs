//! Arbitrary text as JSON into every stored or exchanged record type: never a panic, and whatever
//! is accepted serializes and parses back to the same value. Loaded key records also survive
//! `ApiKey::from_record(key.to_record())` unchanged.
#![no_main]

use core::fmt::Debug;

use keygate::RateLimitSpec;
use keygate::{
    AccountId, ApiKey, ApiKeyRecord, Catalog, KeyId, KeyState, ProjectId, RateLimit,
    RateLimitState, RetiredSecret, Scope, Tier, Timestamp, TokenHash, Usage,
};
use keygate::{CatalogSpec, RoleSpec};
use libfuzzer_sys::fuzz_target;
use serde::Serialize;
use serde::de::DeserializeOwned;

/// Parses `text` as `T`; if that works, the value's JSON parses back to the same value.
fn round_trip<T>(text: &str) -> Option<T>
where
    T: DeserializeOwned + Serialize + PartialEq + Debug,
{
    let value: T = serde_json::from_str(text).ok()?;
    let json = serde_json::to_string(&value).expect("an accepted value serializes");
    let back: T = serde_json::from_str(&json)
        .unwrap_or_else(|e| panic!("{value:?} wrote {json}, which does not parse back: {e}"));
    assert_eq!(back, value, "{json}");
    Some(value)
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let record = round_trip::<ApiKeyRecord>(text);
    let catalog = round_trip::<Catalog>(text);
    round_trip::<CatalogSpec>(text);
    round_trip::<RoleSpec>(text);
    round_trip::<RateLimit>(text);
    round_trip::<RateLimitSpec>(text);
    round_trip::<RateLimitState>(text);
    round_trip::<RetiredSecret>(text);
    round_trip::<KeyState>(text);
    round_trip::<Usage>(text);
    round_trip::<Tier>(text);
    round_trip::<Scope>(text);
    round_trip::<Timestamp>(text);
    round_trip::<KeyId>(text);
    round_trip::<TokenHash>(text);
    round_trip::<AccountId>(text);
    round_trip::<ProjectId>(text);

    if let Some(catalog) = catalog {
        // A catalog that loads writes a spec that loads to the same catalog.
        let spec: CatalogSpec = catalog.clone().into();
        assert_eq!(Catalog::try_from(spec).ok(), Some(catalog));
    }
    if let Some(record) = record {
        let catalog = Catalog::read_write_delete();
        if let Ok(key) = ApiKey::from_record(record.clone(), &catalog) {
            let again = ApiKey::from_record(key.to_record(&catalog), &catalog)
                .expect("a loaded key's own record loads");
            assert_eq!(again, key);
            // Only permission order and duplicates may differ from what was stored.
            let mut stored = record.permissions.clone();
            stored.sort();
            stored.dedup();
            let mut written = key.to_record(&catalog).permissions;
            written.sort();
            assert_eq!(written, stored);
        }
    }
});
