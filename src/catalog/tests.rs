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
