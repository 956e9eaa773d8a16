//! Address restrictions end to end: the decision (constant-time and reference), the refusal's
//! status and body, issuing with validation and attenuation, managing, records and views.

#![expect(
    clippy::unwrap_used,
    reason = "a broken test fixture should stop the test loudly"
)]
#![expect(clippy::panic, reason = "a test fails by panicking")]

use std::net::IpAddr;

use keygate::testing::reference;
use keygate::{
    AccountId, Action, AddressRange, ApiKey, ApiKeyRecord, Catalog, Decision, Deny, Escalation,
    IssueError, Issuer, KeyId, KeySpec, MAX_ADDRESS_RANGES, ManageError, ManageOp, Refusal,
    Resource, Scope, Timestamp, TokenHash, authorize, issue, manage,
};
use rand::SeedableRng;
use rand::rngs::StdRng;

fn ip(text: &str) -> IpAddr {
    text.parse().unwrap()
}

fn ranges(texts: &[&str]) -> Vec<AddressRange> {
    texts.iter().map(|t| t.parse().unwrap()).collect()
}

fn now() -> Timestamp {
    Timestamp::from_unix_seconds(1_000_000)
}

fn key(allowed: &[&str]) -> ApiKey {
    let catalog = Catalog::read_write_delete();
    ApiKey::new(
        KeyId::from_bytes([3; 16]),
        "k",
        AccountId::from_u64(1),
        Scope::Account,
        catalog.all(),
        TokenHash::of("t"),
        Timestamp::EPOCH,
    )
    .with_allowed_addresses(&ranges(allowed))
    .unwrap()
}

fn decide(key: &ApiKey, address: Option<&str>) -> Decision {
    let catalog = Catalog::read_write_delete();
    let read = Action::named(&catalog, "read").unwrap();
    let mut resource = Resource::listing(AccountId::from_u64(1));
    if let Some(address) = address {
        resource = resource.from_address(ip(address));
    }
    let decision = authorize(key, read, &resource, now());
    assert_eq!(
        decision,
        reference::authorize(key, read, &resource, now()),
        "{address:?}"
    );
    decision
}

#[test]
fn a_restricted_key_works_only_from_its_ranges() {
    let restricted = key(&["10.0.0.0/8", "2001:db8::/32"]);
    for inside in [
        "10.0.0.1",
        "10.255.255.255",
        "2001:db8::1",
        "::ffff:10.1.2.3",
    ] {
        assert_eq!(
            decide(&restricted, Some(inside)),
            Decision::Allow,
            "{inside}"
        );
    }
    for outside in ["127.0.0.1", "11.0.0.0", "2001:db9::", "::a00:1", "::1"] {
        assert_eq!(
            decide(&restricted, Some(outside)),
            Decision::Deny(Deny::AddressNotAllowed),
            "{outside}"
        );
    }
    // Deny by default: a restricted key refuses a request whose address nobody gave.
    assert_eq!(
        decide(&restricted, None),
        Decision::Deny(Deny::AddressNotAllowed)
    );
}

#[test]
fn an_unrestricted_key_works_from_anywhere_and_without_an_address() {
    let open = key(&[]);
    assert_eq!(decide(&open, None), Decision::Allow);
    assert_eq!(decide(&open, Some("203.0.113.9")), Decision::Allow);
    assert_eq!(decide(&open, Some("2001:db8::1")), Decision::Allow);
}

#[test]
fn the_address_rule_comes_right_after_liveness() {
    let mut restricted = key(&["10.0.0.0/8"]);
    let catalog = Catalog::read_write_delete();
    let read = Action::named(&catalog, "read").unwrap();
    // Another account's resource from outside: the address decides, so nothing about the
    // resource leaks to a stolen key used from elsewhere.
    let elsewhere = Resource::listing(AccountId::from_u64(2)).from_address(ip("1.2.3.4"));
    assert_eq!(
        authorize(&restricted, read, &elsewhere, now()),
        Decision::Deny(Deny::AddressNotAllowed)
    );
    restricted.revoke(Timestamp::EPOCH);
    assert_eq!(
        authorize(&restricted, read, &elsewhere, now()),
        Decision::Deny(Deny::Revoked)
    );
    let why = reference::explain(&catalog, &restricted, read, &elsewhere, now());
    assert_eq!(why.rules[1].rule, reference::Rule::FromAllowedAddress);
    assert!(why.rules[1].detail.contains("10.0.0.0/8"), "{why}");
    assert!(why.rules[1].detail.contains("1.2.3.4"), "{why}");
}

#[test]
fn the_refusal_is_403_with_its_message() {
    let catalog = Catalog::read_write_delete();
    assert_eq!(Deny::AddressNotAllowed.status(), 403);
    assert_eq!(
        serde_json::to_string(&Deny::AddressNotAllowed.body(&catalog)).unwrap(),
        r#"{"error":"API key not allowed from this address"}"#
    );
    assert_eq!(
        reference::deny_name(&Deny::AddressNotAllowed),
        "address_not_allowed"
    );
}

fn owner() -> Issuer {
    let catalog = Catalog::read_write_delete();
    Issuer::user(AccountId::from_u64(1), Scope::Account, catalog.all())
}

fn invalid(err: IssueError) -> Vec<String> {
    match err {
        IssueError::Invalid(errors) => errors.messages().to_vec(),
        other => panic!("expected 422, got {other:?}"),
    }
}

#[test]
fn issuing_validates_ranges() {
    let catalog = Catalog::read_write_delete();
    let mut rng = StdRng::seed_from_u64(0);
    let issued = issue(
        &catalog,
        &owner(),
        KeySpec::named("office").allowed_addresses(["10.0.0.0/8", " 2001:db8::/32 "]),
        now(),
        &mut rng,
    )
    .unwrap()
    .key;
    assert_eq!(
        issued.allowed_addresses(),
        ranges(&["10.0.0.0/8", "2001:db8::/32"])
    );

    let err = issue(
        &catalog,
        &owner(),
        KeySpec::named("bad").allowed_addresses(["10.0.0.1/8", "nope", "10.0.0.0/40"]),
        now(),
        &mut rng,
    )
    .unwrap_err();
    assert_eq!(err.status(), 422);
    assert_eq!(
        invalid(err),
        [
            "Invalid address range: 10.0.0.1/8 (expected CIDR, such as 10.0.0.0/8)",
            "Invalid address range: nope (expected CIDR, such as 10.0.0.0/8)",
            "Invalid address range: 10.0.0.0/40 (expected CIDR, such as 10.0.0.0/8)",
        ]
    );
    let too_many = vec!["10.0.0.0/8"; MAX_ADDRESS_RANGES + 1];
    let err = issue(
        &catalog,
        &owner(),
        KeySpec::named("many").allowed_addresses(too_many),
        now(),
        &mut rng,
    )
    .unwrap_err();
    assert_eq!(invalid(err), ["Too many allowed addresses (maximum is 8)"]);
    let err = issue(
        &catalog,
        &owner(),
        KeySpec::named("none").allowed_addresses(Vec::<String>::new()),
        now(),
        &mut rng,
    )
    .unwrap_err();
    assert_eq!(invalid(err), ["Allowed addresses can't be empty"]);

    // The JSON body carries them too.
    let spec: KeySpec =
        serde_json::from_str(r#"{"name": "ci", "allowed_addresses": ["192.168.0.0/16"]}"#).unwrap();
    let issued = issue(&catalog, &owner(), spec, now(), &mut rng)
        .unwrap()
        .key;
    assert_eq!(issued.allowed_addresses(), ranges(&["192.168.0.0/16"]));
}

#[test]
fn a_child_key_stays_within_its_issuers_ranges() {
    let catalog = Catalog::read_write_delete();
    let mut rng = StdRng::seed_from_u64(1);
    let parent = issue(
        &catalog,
        &owner(),
        KeySpec::named("parent").allowed_addresses(["10.0.0.0/8", "2001:db8::/32"]),
        now(),
        &mut rng,
    )
    .unwrap()
    .key;
    let as_issuer = Issuer::key(&catalog, &parent, now()).unwrap();
    assert_eq!(as_issuer.allowed_addresses(), parent.allowed_addresses());

    // No ranges asked for: the issuer's are inherited, never "anywhere".
    let child = issue(&catalog, &as_issuer, KeySpec::named("c"), now(), &mut rng)
        .unwrap()
        .key;
    assert_eq!(child.allowed_addresses(), parent.allowed_addresses());
    // Narrower ranges, each within one of the issuer's: granted.
    let child = issue(
        &catalog,
        &as_issuer,
        KeySpec::named("c").allowed_addresses(["10.1.0.0/16", "2001:db8:1::/48", "10.2.3.4"]),
        now(),
        &mut rng,
    )
    .unwrap()
    .key;
    assert_eq!(child.allowed_addresses().len(), 3);
    // Any range reaching outside: refused, naming the issuer's ranges.
    for wider in [
        &["0.0.0.0/0"][..],
        &["10.0.0.0/7"],
        &["10.1.0.0/16", "11.0.0.0/8"],
    ] {
        let err = issue(
            &catalog,
            &as_issuer,
            KeySpec::named("c").allowed_addresses(wider.iter().copied()),
            now(),
            &mut rng,
        )
        .unwrap_err();
        assert_eq!(err.status(), 403);
        assert_eq!(
            err,
            IssueError::Escalation(vec![Escalation::AllowedAddresses {
                requested: ranges(wider),
                held: ranges(&["10.0.0.0/8", "2001:db8::/32"]),
            }])
        );
        assert_eq!(
            err.body(&catalog).message(),
            "Cannot create an API key usable from addresses outside its issuer's \
             (10.0.0.0/8, 2001:db8::/32)"
        );
    }
    // An unrestricted key may issue restricted or unrestricted children.
    let open = issue(&catalog, &owner(), KeySpec::named("open"), now(), &mut rng)
        .unwrap()
        .key;
    let open_issuer = Issuer::key(&catalog, &open, now()).unwrap();
    for spec in [
        KeySpec::named("c"),
        KeySpec::named("c").allowed_addresses(["::/0"]),
    ] {
        assert!(issue(&catalog, &open_issuer, spec, now(), &mut rng).is_ok());
    }
}

#[test]
fn a_restricted_caller_cannot_manage_an_unrestricted_key() {
    let catalog = Catalog::read_write_delete();
    let mut rng = StdRng::seed_from_u64(2);
    let restricted = issue(
        &catalog,
        &owner(),
        KeySpec::named("r").allowed_addresses(["10.0.0.0/8"]),
        now(),
        &mut rng,
    )
    .unwrap()
    .key;
    let open = issue(&catalog, &owner(), KeySpec::named("o"), now(), &mut rng)
        .unwrap()
        .key;
    let caller = Issuer::key(&catalog, &restricted, now()).unwrap();
    let err = manage(&catalog, &caller, &open, ManageOp::Rotate, now()).unwrap_err();
    assert!(
        matches!(&err, ManageError::Escalation(e) if matches!(e[..], [Escalation::AllowedAddresses { .. }])),
        "{err:?}"
    );
    assert!(manage(&catalog, &caller, &restricted, ManageOp::Rotate, now()).is_ok());
    // The other way round is fine: the unrestricted caller holds more.
    let caller = Issuer::key(&catalog, &open, now()).unwrap();
    assert!(manage(&catalog, &caller, &restricted, ManageOp::Rotate, now()).is_ok());
}

#[test]
fn records_and_views_carry_ranges_and_old_records_load_unrestricted() {
    let catalog = Catalog::read_write_delete();
    let restricted = key(&["10.0.0.0/8", "2001:db8::/32"]);
    let record = restricted.to_record(&catalog);
    let json = serde_json::to_value(&record).unwrap();
    assert_eq!(
        json["allowed_addresses"],
        serde_json::json!(["10.0.0.0/8", "2001:db8::/32"])
    );
    let back: ApiKeyRecord = serde_json::from_value(json).unwrap();
    assert_eq!(ApiKey::from_record(back, &catalog).unwrap(), restricted);

    let view = serde_json::to_value(restricted.view(&catalog)).unwrap();
    assert_eq!(
        view["allowed_addresses"],
        serde_json::json!(["10.0.0.0/8", "2001:db8::/32"])
    );
    // An unrestricted key writes no field, and a record without one loads unrestricted.
    let open = key(&[]);
    let json = serde_json::to_value(open.to_record(&catalog)).unwrap();
    assert!(json.get("allowed_addresses").is_none());
    assert!(
        serde_json::to_value(open.view(&catalog))
            .unwrap()
            .get("allowed_addresses")
            .is_none()
    );
    let back: ApiKeyRecord = serde_json::from_value(json).unwrap();
    assert!(
        ApiKey::from_record(back, &catalog)
            .unwrap()
            .allowed_addresses()
            .is_empty()
    );
    // A malformed range in a record is a load error, never a dropped restriction.
    let mut json = serde_json::to_value(restricted.to_record(&catalog)).unwrap();
    json["allowed_addresses"] = serde_json::json!(["10.0.0.1/8"]);
    assert!(serde_json::from_value::<ApiKeyRecord>(json).is_err());
    let mut record = restricted.to_record(&catalog);
    record.allowed_addresses = ranges(&["10.0.0.0/8"; MAX_ADDRESS_RANGES + 1]);
    assert!(ApiKey::from_record(record, &catalog).is_err());
}
