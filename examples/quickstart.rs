//! Builds an account-wide and a project-scoped key by hand and prints a handful of decisions with
//! the HTTP status and JSON body a server would send.
//!
//! Run with `cargo run --example quickstart`.

use std::error::Error;

use keygate::Refusal;
use keygate::{
    AccountId, Action, ApiKey, Catalog, Decision, KeyId, ProjectId, Resource, Scope, Timestamp,
    TokenFormat, authorize,
};
use rand::SeedableRng;

fn main() -> Result<(), Box<dyn Error>> {
    // The coarse read/write/delete model of IdentityCall (IdentityCall's API).
    let catalog = Catalog::read_write_delete();
    let account = AccountId::from_u64(7);
    let support = ProjectId::from_u64(42);
    let billing = ProjectId::from_u64(43);
    let now: Timestamp = "2026-04-15T10:00:00Z".parse()?;

    // A real server draws from the OS; a seeded RNG keeps this demo's output stable.
    let mut rng = rand::rngs::StdRng::seed_from_u64(2026);
    let format = TokenFormat::default();

    let admin_token = format.mint(&mut rng);
    let admin = ApiKey::new(
        KeyId::random(&mut rng),
        "Provisioning",
        account,
        Scope::Account,
        catalog.expand(["*"])?,
        admin_token.hash(),
        now,
    );
    let uploader_token = format.mint(&mut rng);
    let uploader = ApiKey::new(
        KeyId::random(&mut rng),
        "Support uploader",
        account,
        Scope::Project(support),
        catalog.expand(["read", "write"])?,
        uploader_token.hash(),
        now,
    );
    println!("account-wide key:   {admin_token} (shown redacted; the secret is printed nowhere)");
    println!("project-scoped key: {uploader_token}\n");

    let read = Action::for_method(&catalog, "GET")?;
    let write = Action::for_method(&catalog, "POST")?;
    let delete = Action::for_method(&catalog, "DELETE")?;
    let create_project = write.at_account_level();

    let requests = [
        (
            "Provisioning",
            &admin,
            "POST /projects",
            create_project,
            Resource::account(account),
        ),
        (
            "Support uploader",
            &uploader,
            "POST /projects",
            create_project,
            Resource::account(account),
        ),
        (
            "Support uploader",
            &uploader,
            "POST /recordings (project 42)",
            write,
            Resource::in_project(account, support),
        ),
        (
            "Support uploader",
            &uploader,
            "GET /recordings/9 (project 43)",
            read,
            Resource::in_project(account, billing),
        ),
        (
            "Support uploader",
            &uploader,
            "DELETE /recordings/8 (project 42)",
            delete,
            Resource::in_project(account, support),
        ),
        (
            "Provisioning",
            &admin,
            "GET /recordings/1 (account 8)",
            read,
            Resource::in_project(AccountId::from_u64(8), support),
        ),
    ];
    for (who, key, request, action, resource) in requests {
        let (status, body) = match authorize(key, action, &resource, now) {
            Decision::Allow => (200, "(handler runs)".to_owned()),
            Decision::Deny(deny) => (deny.status(), serde_json::to_string(&deny.body(&catalog))?),
        };
        println!("{who:<17} {request:<36} -> {status} {body}");
    }

    let mut expired = uploader.clone().with_expiry(now);
    let later = "2026-04-15T10:00:01Z".parse()?;
    let decision = authorize(
        &expired,
        read,
        &Resource::in_project(account, support),
        later,
    );
    println!("\nafter expiry: {decision:?}");
    expired.revoke(later);
    println!(
        "after revocation: {:?}",
        authorize(&expired, read, &Resource::listing(account), now)
    );
    Ok(())
}
