//! Seed 003, Deepgram "Create a Project Key": project keys with role scopes such as `member`,
//! tags, a comment, an expiration date or a time to live, and the key value returned once.
#![expect(
    clippy::unwrap_used,
    reason = "test helpers outside #[test] functions: a failed unwrap is a failed test"
)]

use keygate::Refusal;
use keygate::{
    AccountId, Catalog, IssueError, IssuedKey, Issuer, KeySpec, ProjectId, Scope, Timestamp,
    TokenFormat, issue,
};
use rand::SeedableRng;
use rand::rngs::StdRng;
use serde_json::{Value, json};

fn acct() -> AccountId {
    AccountId::from_u64(1)
}

fn project() -> ProjectId {
    "3f2c1a9e-8b7d-4c6e-9a1f-2b3c4d5e6f70".parse().unwrap()
}

fn now() -> Timestamp {
    "2025-06-01T00:00:00Z".parse().unwrap()
}

/// The response body of `POST /v1/projects/:project_id/keys`, built from an issued key.
fn response(issued: &IssuedKey) -> Value {
    let key = &issued.key;
    json!({
        "api_key_id": key.id().to_string(),
        "key": issued.token.expose_secret(),
        "comment": key.comment(),
        "scopes": key.role().into_iter().collect::<Vec<_>>(),
        "tags": key.tags(),
        "expiration_date": key.expires_at(),
    })
}

fn owner(catalog: &Catalog) -> Issuer {
    Issuer::user_with_role(catalog, acct(), Scope::Project(project()), "owner").unwrap()
}

#[test]
fn create_a_member_key_with_tags_comment_and_expiration_date() {
    let catalog = Catalog::read_write_delete();
    // The seed's request: {"expiration_date": "2026-01-01T00:00:00Z"}, with the response's scopes,
    // tags and comment.
    let spec = KeySpec::named("a comment")
        .role("member")
        .tag("tag-1")
        .comment("a comment")
        .expires_at("2026-01-01T00:00:00Z".parse().unwrap());
    let issued = issue(
        &catalog,
        &owner(&catalog),
        spec,
        now(),
        &mut StdRng::seed_from_u64(3),
    )
    .unwrap();
    let body = response(&issued);
    let id = body["api_key_id"].as_str().unwrap();
    assert_eq!(id.len(), 32);
    assert!(
        id.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    );
    assert_eq!(body["scopes"], json!(["member"]));
    assert_eq!(body["tags"], json!(["tag-1"]));
    assert_eq!(body["comment"], json!("a comment"));
    assert_eq!(body["expiration_date"], json!("2026-01-01T00:00:00Z"));
    assert_eq!(issued.key.scope(), Scope::Project(project()));
    assert_eq!(
        issued.key.permissions(),
        catalog.role("member").unwrap().permissions()
    );
    // The key value is in this response only: the stored record keeps its hash.
    let record = serde_json::to_value(issued.key.to_record(&catalog)).unwrap();
    assert!(record.get("key").is_none());
    assert!(!record.to_string().contains(issued.token.expose_secret()));
    assert_eq!(record["role"], json!("member"));
    assert_eq!(record["tags"], json!(["tag-1"]));
    assert_eq!(record["comment"], json!("a comment"));
}

#[test]
fn expiration_date_or_time_to_live_but_not_both() {
    let catalog = Catalog::read_write_delete();
    let mut rng = StdRng::seed_from_u64(0);
    let ttl = issue(
        &catalog,
        &owner(&catalog),
        KeySpec::named("k").ttl_seconds(86_400),
        now(),
        &mut rng,
    )
    .unwrap();
    assert_eq!(
        response(&ttl)["expiration_date"],
        json!("2025-06-02T00:00:00Z")
    );

    let both = KeySpec::named("k")
        .ttl_seconds(60)
        .expires_at("2026-01-01T00:00:00Z".parse().unwrap());
    let err = issue(&catalog, &owner(&catalog), both, now(), &mut rng).unwrap_err();
    assert_eq!(err.status(), 422);
    assert_eq!(
        serde_json::to_value(err.body(&catalog)).unwrap(),
        json!({"errors": ["Specify an expiration date or a time to live, not both"]})
    );

    // The seed's example response carries an expiration date already past: issuing one is refused.
    let past = KeySpec::named("k").expires_at("2024-05-01T00:00:00.000000Z".parse().unwrap());
    let err = issue(&catalog, &owner(&catalog), past, now(), &mut rng).unwrap_err();
    assert_eq!(
        serde_json::to_value(err.body(&catalog)).unwrap(),
        json!({"errors": ["Expiration date must be in the future"]})
    );
}

#[test]
fn a_key_never_gets_a_role_above_its_creators() {
    let catalog = Catalog::read_write_delete();
    let roles = ["member", "admin", "owner"];
    let mut rng = StdRng::seed_from_u64(0);
    for (creator_rank, creator) in roles.iter().enumerate() {
        let issuer =
            Issuer::user_with_role(&catalog, acct(), Scope::Project(project()), creator).unwrap();
        for (rank, role) in roles.iter().enumerate() {
            let result = issue(
                &catalog,
                &issuer,
                KeySpec::named("k").role(*role),
                now(),
                &mut rng,
            );
            match result {
                Ok(issued) => {
                    assert!(rank <= creator_rank, "{creator} granted {role}");
                    assert_eq!(issued.key.role(), Some(*role));
                }
                Err(IssueError::Escalation(_)) => {
                    assert!(rank > creator_rank, "{creator} refused {role}");
                }
                Err(other) => panic!("{creator} -> {role}: {other:?}"),
            }
        }
    }
}

#[test]
fn an_unknown_scope_is_422() {
    let catalog = Catalog::read_write_delete();
    let err = issue(
        &catalog,
        &owner(&catalog),
        KeySpec::named("k").role("superadmin"),
        now(),
        &mut StdRng::seed_from_u64(0),
    )
    .unwrap_err();
    assert_eq!(
        serde_json::to_value(err.body(&catalog)).unwrap(),
        json!({"errors": ["Unknown role: superadmin"]})
    );
}

#[test]
fn a_custom_token_format_can_stand_in_for_other_key_shapes() {
    // Deepgram's example key is 32 bare hex-like characters; keygate's formats always carry a
    // prefix, so the closest is a short prefix and a 32-character body.
    let catalog = Catalog::read_write_delete();
    let format = TokenFormat::new("dg_", 32).unwrap();
    let issued = issue(
        &catalog,
        &owner(&catalog),
        KeySpec::named("k").format(format.clone()),
        now(),
        &mut StdRng::seed_from_u64(0),
    )
    .unwrap();
    assert!(bool::from(format.matches(issued.token.expose_secret())));
    assert_eq!(issued.token.expose_secret().len(), 35);
}
