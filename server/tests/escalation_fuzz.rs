//! keygate's escalation-fuzzing kit against the reference server, over HTTP on 127.0.0.1:
//! it finds a deliberately planted management escalation (regenerate without the
//! caller-vs-target check: a read+write key takes over the bootstrap key) within a bounded number
//! of sequences, and finds nothing against the real router.

#[path = "../examples/fuzz_server/http_api.rs"]
mod http_api;

use keygate::testing::{ViolationKind, fuzz_escalation};

/// The most sequences the planted bug may take to find. It takes a handful (a read+write key
/// created by the root, then that key regenerating the root key); the bound leaves room for
/// other seeds.
const PLANTED_BOUND: u32 = 100;

#[test]
fn finds_the_planted_regenerate_escalation() {
    let mut launcher =
        http_api::Launcher::new(keygate_server::router_with_planted_escalation).unwrap();
    let config = http_api::config()
        .cases(PLANTED_BOUND)
        .max_shrink_iters(64)
        .seed(1);
    let report = fuzz_escalation(&config, || launcher.start());
    let failure = report.failure.as_ref().unwrap_or_else(|| {
        panic!("the planted escalation was not found in {PLANTED_BOUND} sequences: {report}")
    });
    assert!(
        (1..=PLANTED_BOUND).contains(&failure.found_at_case),
        "{report}"
    );
    let violation = failure
        .violation
        .as_ref()
        .unwrap_or_else(|| panic!("not a violation: {report}"));
    // The regenerate itself is flagged (the caller does not dominate the target), or the stolen
    // token's first use beyond the caller's lineage.
    assert!(
        matches!(
            violation.kind,
            ViolationKind::ManagesBeyondLineage | ViolationKind::BeyondLineage
        ),
        "{report}"
    );
    // Shrunk, the sequence ends in a regenerate that a lesser key was allowed (of the bootstrap
    // key, or of another key it does not dominate).
    let transcript = failure.transcript.join("\n");
    assert!(transcript.contains(" rotates k"), "{report}");
    assert!(
        failure.transcript.len() <= 4,
        "shrunk to a short sequence: {report}"
    );
    let text = report.to_string();
    assert!(
        text.contains("escalation fuzzing: found at sequence"),
        "{text}"
    );
}

#[test]
fn finds_nothing_against_the_real_router() {
    let mut launcher = http_api::Launcher::new(keygate_server::router).unwrap();
    let config = http_api::config().cases(64).seed(2);
    fuzz_escalation(&config, || launcher.start()).assert_no_escalation();
}
