#![doc = include_str!("../README.md")]
//!
//! ## Crate map, in the order of the flow
//!
//! | step | items |
//! |---|---|
//! | define permissions | [`Catalog`], [`Permission`], [`PermissionSet`], [`Role`] |
//! | name tenants and resources | [`AccountId`], [`ProjectId`], [`Scope`], [`Resource`] |
//! | mint and recognise secrets | [`TokenFormat`], [`Token`], [`TokenHash`]; [`TokenFormat::scan`] and [`Found`] for leaked ones |
//! | issue keys that only do less | [`issue()`], [`Issuer`], [`KeySpec`], [`IssueError`] |
//! | manage keys without escalating | [`manage()`], [`ManageOp`], [`Permit`], [`ManageError`] |
//! | hold keys | [`ApiKey`], [`ApiKeyRecord`], [`Keyring`], [`SharedKeyring`] (concurrent) |
//! | change keys safely | [`Staged`] / [`SharedStaged`]: persist a [`Change`]'s records, then apply |
//! | decide | [`authorize()`], [`Action`], [`Decision`], [`Deny`] |
//! | say why | [`explain`](mod@explain): every rule's outcome, for logs and policy tests; [`Keyring::authorize_explained`] |
//! | limit and count | [`RateLimit`], [`NamedLimit`], [`Credits`], [`Keyring::admit`], [`Usage`], [`Tier`] |
//! | answer | [`Refusal`]: every refusal's status and JSON body |
//! | serve (feature `axum`) | `keygate::axum`: the extractor and error responses |
//! | test (feature `testing`) | `keygate::testing`: policy test files, the reference model, proptest strategies, the escalation fuzzer |
//!
//! ## A small axum server, whole
//!
//! `examples/axum_minimal.rs` (`cargo run --example axum_minimal --features axum`): a catalog,
//! keys, [`axum::KeygateLayer`], two routes stating the permission
//! they need in their signature.
#![cfg_attr(
    feature = "axum",
    doc = concat!("```rust,no_run\n", include_str!("../examples/axum_minimal.rs"), "\n```")
)]
//!
//! ## Where to go next
//!
//! - [`manage()`] and [`Keyring::set_creator_cap`]: changing keys without escalating.
//! - [`SharedKeyring`]: one keyring for every thread, with staged, persisted changes.
//! - `keygate::testing` (feature `testing`): policy test files and escalation fuzzing for your
//!   own server.
//! - docs/PERFORMANCE.md, docs/ASSURANCE.md and docs/SEEDS.md in the repository: the figures,
//!   the constant-time evidence, and where every rule comes from.
#![forbid(unsafe_code)]
#![deny(missing_docs)]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod address;
mod authorize;
#[cfg(feature = "axum")]
#[cfg_attr(docsrs, doc(cfg(feature = "axum")))]
pub mod axum;
mod catalog;
mod credits;
mod ct;
mod decision;
pub mod explain;
mod issue;
mod key;
mod keyring;
mod limits;
mod quota;
mod ratelimit;
mod response;
mod scan;
mod scope;
#[cfg(feature = "testing")]
pub mod testing;
mod timestamp;
mod token;
mod usage;

pub use address::{AddressRange, AddressRangeError, MAX_ADDRESS_RANGES};
pub use authorize::{Action, authorize, authorize_capped};
pub use catalog::{
    Catalog, CatalogError, CatalogSpec, ImplicationSpec, MAX_NAME_LEN, MAX_PERMISSIONS, Permission,
    PermissionSet, Role, RoleSpec,
};
pub use credits::{Credits, CreditsError, CreditsSpent, Refill, UsageExceeded};
pub use decision::{Decision, Deny};
pub use issue::{
    Escalation, IssueError, IssuedKey, Issuer, IssuerKind, KeySpec, KeyUpdate, MAX_COMMENT_LEN,
    MAX_CREATED_BY_LEN, MAX_KEY_NAME_LEN, MAX_TAG_LEN, MAX_TAGS, ManageError, ManageOp, Permit,
    ValidationErrors, issue, key_management_permission, manage,
};
pub use key::{ApiKey, ApiKeyRecord, KeyId, KeyIdError, KeyView, LifecycleError, RetiredSecret};
pub use keyring::{
    AuthenticatedKey, Change, KeyState, Keyring, KeyringError, MAX_RATE_LIMIT_CHAIN, RecordChange,
    SharedKeyring, SharedStaged, Staged, Writer,
};
pub use limits::{Budget, LimitError, MAX_LIMIT_NAME_LEN, MAX_NAMED_LIMITS, NamedLimit, Throttled};
pub use quota::{
    Limits, MAX_PROJECT_DESCRIPTION_LEN, MAX_PROJECT_NAME_LEN, MIN_PROJECT_NAME_LEN, QuotaError,
    Tier, validate_project,
};
pub use ratelimit::{RateLimit, RateLimitError, RateLimitSpec, RateLimitState, RetryAfter};
pub use response::{ErrorBody, RateLimitBody, Refusal, ResponseBody, UsageExceededBody};
pub use scan::{Found, Scan};
pub use scope::{AccountId, IdError, ProjectId, Resource, Scope};
pub use timestamp::{Timestamp, TimestampError};
pub use token::{Token, TokenFormat, TokenFormatError, TokenHash, TokenHashError};
pub use usage::Usage;
