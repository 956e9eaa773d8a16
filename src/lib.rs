#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod authorize;
#[cfg(feature = "axum")]
pub mod axum;
pub mod catalog;
pub mod decision;
pub mod issue;
pub mod key;
pub mod keyring;
pub mod quota;
pub mod ratelimit;
pub mod scope;
pub mod timestamp;
pub mod token;
pub mod usage;

pub use authorize::{Action, authorize};
pub use catalog::{Catalog, CatalogError, Permission, PermissionSet, Role};
pub use decision::{Decision, Deny, ErrorBody};
pub use issue::{
    Escalation, IssueError, IssueErrorBody, IssuedKey, Issuer, IssuerKind, KeySpec,
    ValidationErrors, issue,
};
pub use key::{ApiKey, ApiKeyRecord, KeyId, KeyIdError, LifecycleError, RetiredSecret};
pub use keyring::{KeyState, Keyring, KeyringError};
pub use quota::{Limits, QuotaError, Tier};
pub use ratelimit::{RateLimit, RateLimitError, RateLimitState, RetryAfter};
pub use scope::{AccountId, IdError, ProjectId, Resource, Scope};
pub use timestamp::{Timestamp, TimestampError};
pub use token::{Token, TokenFormat, TokenFormatError, TokenHash, TokenHashError};
pub use usage::Usage;
