//! The test kit for keygate's users (feature `testing`): an extension point, public as a module.
//!
//! - **Policy test files** ([`PolicyTests`]): fixtures and expected answers in TOML, run against
//!   keygate's real decisions, with a report whose failures read as expected-vs-actual diffs. The
//!   format is documented in `docs/POLICY_TESTS.md`; `keygate test FILE` (crate `keygate-cli`)
//!   runs them from a shell.
//! - [`reference`](mod@reference): the plain reference model of `authorize`, and [`reference::explain`].
//! - [`strategy`]: proptest strategies for catalogs, keys, requests, key specs and issue chains.
//! - **Escalation fuzzing** of your own server: implement [`KeyApi`] (create, rotate, revoke,
//!   authorize) over HTTP or in process, and [`fuzz_escalation`] drives random operation
//!   sequences through it; the [`Oracle`] flags any credential doing more than its lineage allows
//!   (a key rotating a richer key and using its new token, a revoked key still working).
//!   `server/examples/fuzz_server.rs` points it at keygate's reference server.
//!
//! ```
//! use keygate::testing::PolicyTests;
//! let report = PolicyTests::from_toml(r#"
//!     now = 2026-04-15T10:00:00Z
//!     catalog = { preset = "read_write_delete" }
//!
//!     [[key]]
//!     name = "analytics"
//!     permissions = ["read"]
//!
//!     [[check]]
//!     key = "analytics"
//!     action = "write"
//!     resource = "project:1"
//!     expect = "missing_permission"
//!     status = 403
//!     message = "Write permission required"
//! "#, "analytics.toml")?.run();
//! report.assert_passes();
//! # Ok::<(), keygate::testing::PolicyError>(())
//! ```

mod escalation;
mod policy;
pub mod reference;

pub use escalation::{
    Ceiling, Counterexample, CreateKey, FuzzConfig, FuzzReport, KeyApi, NewKey, Observed, Oracle,
    Probe, Reply, RootKey, Violation, ViolationKind, fuzz_escalation,
};
pub use policy::{
    AccessMatrix, CaseKind, CaseOutcome, CaseReport, Location, MatrixKey, NameKind, PolicyError,
    PolicyReport, PolicyTests, Problem, ResourceRef,
};
pub mod strategy;
