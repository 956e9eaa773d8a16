use super::*;

fn fine() -> Catalog {
    Catalog::new([
        "agents:read",
        "agents:write",
        "calls:read",
        "calls:delete",
        "read",
    ])
    .unwrap()
}

#[test]
fn patterns_expand_against_the_catalog() {
    let c = fine();
    let names = |p: &[&str]| -> Vec<String> {
        let set = c.expand(p).unwrap();
        c.names(&set).map(str::to_owned).collect()
    };
    assert_eq!(names(&["agents:*"]), ["agents:read", "agents:write"]);
    assert_eq!(names(&["*:read"]), ["agents:read", "calls:read"]);
    assert_eq!(names(&["*"]).len(), 5);
    assert_eq!(names(&["read"]), ["read"]);
    assert_eq!(
        names(&["calls:delete", "agents:read"]),
        ["agents:read", "calls:delete"]
    );
}

#[test]
fn bad_patterns_are_errors() {
    let c = fine();
    for (p, want) in [
        ("nope:*", CatalogError::NoMatch("nope:*".into())),
        ("*:nope", CatalogError::NoMatch("*:nope".into())),
        (
            "agents:nope",
            CatalogError::UnknownPermission("agents:nope".into()),
        ),
        ("*:*", CatalogError::InvalidPattern("*:*".into())),
        ("a:b:c", CatalogError::InvalidPattern("a:b:c".into())),
        ("", CatalogError::InvalidPattern("".into())),
        (
            "agents:re*",
            CatalogError::InvalidPattern("agents:re*".into()),
        ),
        (":read", CatalogError::InvalidPattern(":read".into())),
    ] {
        assert_eq!(c.expand([p]), Err(want), "{p:?}");
    }
    assert!(
        c.resolve(["agents:*"]).is_err(),
        "resolve takes exact names only"
    );
}

#[test]
fn catalog_construction_errors() {
    assert_eq!(
        Catalog::new(["a", "a"]),
        Err(CatalogError::Duplicate("a".into()))
    );
    assert_eq!(
        Catalog::new(["a b"]),
        Err(CatalogError::InvalidName("a b".into()))
    );
    assert_eq!(
        Catalog::new(["a:"]),
        Err(CatalogError::InvalidName("a:".into()))
    );
    assert_eq!(
        Catalog::new(["*"]),
        Err(CatalogError::InvalidName("*".into()))
    );
    let too_many: Vec<String> = (0..257).map(|i| format!("p{i}")).collect();
    assert_eq!(Catalog::new(too_many), Err(CatalogError::TooMany(257)));
    let max: Vec<String> = (0..256).map(|i| format!("p{i}")).collect();
    let c = Catalog::new(max).unwrap();
    assert_eq!(c.all().len(), 256);
    let last = c.permission("p255").unwrap();
    assert!(bool::from(c.all().contains(last)));
}

#[test]
fn roles_are_ranked_and_validated() {
    let c = fine()
        .with_role("viewer", ["*:read"])
        .unwrap()
        .with_role("admin", ["*"])
        .unwrap();
    assert_eq!(c.role("viewer").unwrap().rank(), 0);
    assert_eq!(c.role("admin").unwrap().rank(), 1);
    assert!(matches!(
        c.clone().with_role("viewer", ["read"]),
        Err(CatalogError::Duplicate(_))
    ));
    assert!(matches!(
        c.with_role("x", ["zzz"]),
        Err(CatalogError::UnknownPermission(_))
    ));
}

#[test]
fn serde_round_trip() {
    let c = fine().with_role("viewer", ["*:read"]).unwrap();
    let json = serde_json::to_string(&c).unwrap();
    assert_eq!(serde_json::from_str::<Catalog>(&json).unwrap(), c);
    let rwd = Catalog::read_write_delete();
    let json = serde_json::to_string(&rwd).unwrap();
    assert_eq!(serde_json::from_str::<Catalog>(&json).unwrap(), rwd);
    assert!(serde_json::from_str::<Catalog>(r#"{"permissions":["a","a"]}"#).is_err());
}

#[test]
fn set_algebra() {
    let c = fine();
    let a = c.expand(["agents:*"]).unwrap();
    let b = c.expand(["*:read"]).unwrap();
    assert_eq!(
        c.names(&a.intersection(&b)).collect::<Vec<_>>(),
        ["agents:read"]
    );
    assert_eq!(a.union(&b).len(), 3);
    assert!(a.intersection(&b).is_subset(&a));
    assert!(!a.is_subset(&b));
    assert!(PermissionSet::EMPTY.is_subset(&a));
}

fn with_writes() -> Catalog {
    Catalog::new([
        "agents:read",
        "agents:write",
        "calls:read",
        "calls:write",
        "billing:write",
        "admin",
    ])
    .unwrap()
}

fn names_of(c: &Catalog, set: &PermissionSet) -> Vec<String> {
    c.names(set).map(str::to_owned).collect()
}

#[test]
fn a_wildcard_implication_binds_the_resource() {
    let c = with_writes()
        .with_implication("*:write", ["*:read"])
        .unwrap();
    let expanded = |p: &[&str]| names_of(&c, &c.expand(p).unwrap());
    assert_eq!(expanded(&["agents:write"]), ["agents:read", "agents:write"]);
    assert_eq!(expanded(&["calls:write"]), ["calls:read", "calls:write"]);
    // No `billing:read` to imply: the binding matches nothing there, which is fine.
    assert_eq!(expanded(&["billing:write"]), ["billing:write"]);
    // Nothing implies a write.
    assert_eq!(expanded(&["agents:read"]), ["agents:read"]);
    assert_eq!(expanded(&["*:write"]).len(), 5);
}

#[test]
fn implications_chain_and_cycles_reach_a_fixpoint() {
    let c = with_writes()
        .with_implication("admin", ["*:write"])
        .unwrap()
        .with_implication("*:write", ["*:read"])
        .unwrap();
    // admin ⇒ every write ⇒ every read, declared in either order.
    assert_eq!(
        c.expand(["admin"]).unwrap(),
        c.all(),
        "admin implies everything through the writes"
    );
    let cyclic = with_writes()
        .with_implication("agents:read", ["calls:read"])
        .unwrap()
        .with_implication("calls:read", ["agents:read"])
        .unwrap();
    let set = cyclic.expand(["agents:read"]).unwrap();
    assert_eq!(names_of(&cyclic, &set), ["agents:read", "calls:read"]);
    assert_eq!(cyclic.expand(["calls:read"]).unwrap(), set);
    // `implied` is the same closure, for any set.
    assert_eq!(
        cyclic.implied(&cyclic.resolve(["calls:read"]).unwrap()),
        set
    );
    assert_eq!(
        with_writes().implied(&set),
        set,
        "no implications: unchanged"
    );
}

#[test]
fn bad_implications_are_errors() {
    let c = with_writes;
    assert_eq!(
        c().with_implication("agents:write", ["agents:nope"]),
        Err(CatalogError::UnknownPermission("agents:nope".into()))
    );
    assert_eq!(
        c().with_implication("agents:nope", ["agents:read"]),
        Err(CatalogError::UnknownPermission("agents:nope".into()))
    );
    assert_eq!(
        c().with_implication("*:nope", ["*:read"]),
        Err(CatalogError::NoMatch("*:nope".into()))
    );
    // A bound pattern that matches for no resource at all is a typo.
    assert_eq!(
        c().with_implication("*:write", ["*:raed"]),
        Err(CatalogError::NoMatch("*:raed".into()))
    );
    assert_eq!(
        c().with_implication("*:write", ["*:*"]),
        Err(CatalogError::InvalidPattern("*:*".into()))
    );
    assert_eq!(
        c().with_implication("*:write", ["bad name"]),
        Err(CatalogError::InvalidPattern("bad name".into()))
    );
    assert_eq!(
        c().with_implication("admin", Vec::<String>::new()),
        Err(CatalogError::EmptyImplication("admin".into()))
    );
}

#[test]
fn roles_hold_what_their_permissions_imply_whenever_declared() {
    let before = with_writes()
        .with_implication("*:write", ["*:read"])
        .unwrap()
        .with_role("writer", ["agents:write"])
        .unwrap();
    let after = with_writes()
        .with_role("writer", ["agents:write"])
        .unwrap()
        .with_implication("*:write", ["*:read"])
        .unwrap();
    for c in [&before, &after] {
        let role = c.role("writer").unwrap().permissions();
        assert_eq!(names_of(c, role), ["agents:read", "agents:write"]);
    }
    assert_eq!(before, after);
}

#[test]
fn records_load_frozen_without_implications() {
    // A key issued `agents:write` before the implication existed stores exactly that name, and
    // loads as exactly that, after.
    let c = with_writes()
        .with_implication("*:write", ["*:read"])
        .unwrap();
    let stored = c.resolve(["agents:write"]).unwrap();
    assert_eq!(names_of(&c, &stored), ["agents:write"]);
}

#[test]
fn catalogs_with_implications_round_trip() {
    let json = r#"{
        "permissions": ["agents:read", "agents:write", "calls:read", "calls:write"],
        "roles": [{"name": "writer", "permissions": ["agents:write"]}],
        "implications": [{"if": "*:write", "then": ["*:read"]}]
    }"#;
    let c: Catalog = serde_json::from_str(json).unwrap();
    assert_eq!(
        names_of(&c, c.role("writer").unwrap().permissions()),
        ["agents:read", "agents:write"]
    );
    assert_eq!(c.implications().len(), 1);
    let text = serde_json::to_string(&c).unwrap();
    assert!(text.contains(r#""implications":[{"if":"*:write","then":["*:read"]}]"#));
    let back: Catalog = serde_json::from_str(&text).unwrap();
    assert_eq!(back, c);

    // Without implications, the serialized form is what it was before they existed.
    let plain = Catalog::new(["a:read"])
        .unwrap()
        .with_role("r", ["a:read"])
        .unwrap();
    assert_eq!(
        serde_json::to_string(&plain).unwrap(),
        r#"{"permissions":["a:read"],"roles":[{"name":"r","permissions":["a:read"]}]}"#
    );
    // And unknown fields are still refused, in an implication too.
    let typo = r#"{"permissions": ["a:read"], "implications": [{"if": "a:read", "than": []}]}"#;
    assert!(serde_json::from_str::<Catalog>(typo).is_err());
}

#[test]
fn the_lowest_permission_is_found_in_every_word() {
    assert_eq!(PermissionSet::EMPTY.ct_lowest(), Permission(0));
    for i in [0u8, 1, 63, 64, 65, 127, 128, 200, 255] {
        let mut set = PermissionSet::single(Permission(i));
        assert_eq!(set.ct_lowest(), Permission(i), "{i}");
        set.insert(Permission(255));
        assert_eq!(set.ct_lowest(), Permission(i), "{i} and 255");
        assert_eq!(set.iter().next(), Some(Permission(i)));
    }
}
