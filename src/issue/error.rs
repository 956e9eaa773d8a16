//! Why a key request was refused: malformed (422) or reaching beyond the issuer (403).

use core::fmt;

use serde::Serialize;

use crate::address::AddressRange;
use crate::decision::Deny;
use crate::ratelimit::RateLimit;
use crate::scope::Scope;
use crate::timestamp::Timestamp;

/// Malformed request parts, as the 422 body `{"errors": ["Name can't be blank", ...]}`.
///
/// ```
/// use keygate::{Catalog, Refusal, ValidationErrors};
/// let errors = ValidationErrors::from(vec!["Name can't be blank".to_owned()]);
/// assert_eq!(errors.status(), 422);
/// assert_eq!(serde_json::to_string(&errors.body(&Catalog::read_write_delete()))?,
///     r#"{"errors":["Name can't be blank"]}"#);
/// # Ok::<(), serde_json::Error>(())
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, thiserror::Error)]
#[error("{}", errors.join("; "))]
pub struct ValidationErrors {
    /// Human-readable messages, in the order the fields were checked.
    pub errors: Vec<String>,
}

impl ValidationErrors {
    /// The messages.
    pub fn messages(&self) -> &[String] {
        &self.errors
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.errors.is_empty()
    }

    pub(crate) fn push(&mut self, message: impl Into<String>) {
        self.errors.push(message.into());
    }

    /// `Ok` if there are none, else `Err(self)`.
    pub(crate) fn into_result(self) -> Result<(), Self> {
        if self.is_empty() { Ok(()) } else { Err(self) }
    }
}

impl From<Vec<String>> for ValidationErrors {
    fn from(errors: Vec<String>) -> Self {
        Self { errors }
    }
}

/// One way a request reaches beyond its issuer.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Escalation {
    /// Permissions the issuer does not hold, by name, sorted.
    Permissions(Vec<String>),
    /// A role the issuer may not hand on: ranked above the issuer's role, or holding permissions
    /// the issuer lacks.
    Role {
        /// The role asked for.
        requested: String,
        /// The issuer's role, if it holds one.
        held: Option<String>,
    },
    /// A scope outside the issuer's.
    Scope {
        /// The scope asked for.
        requested: Scope,
        /// The issuer's scope.
        held: Scope,
    },
    /// An expiry after the key issuer's own.
    Expiry {
        /// The expiry asked for.
        requested: Timestamp,
        /// The issuer's expiry.
        limit: Timestamp,
    },
    /// A rate limit looser than the key issuer's, or none under an issuer that has one.
    RateLimit {
        /// The limit asked for (`None`: unlimited).
        requested: Option<RateLimit>,
        /// The issuer's limit.
        limit: RateLimit,
    },
    /// Client address ranges outside the key issuer's, or none (anywhere) under an issuer that
    /// has some.
    AllowedAddresses {
        /// The ranges asked for (empty: anywhere).
        requested: Vec<AddressRange>,
        /// The issuer's ranges.
        held: Vec<AddressRange>,
    },
}

impl fmt::Display for Escalation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Escalation::Permissions(names) => write!(
                f,
                "Cannot grant permissions the issuer does not hold: {}",
                names.join(", ")
            ),
            Escalation::Role {
                requested,
                held: Some(held),
            } => write!(
                f,
                "Cannot grant role {requested}: it exceeds the issuer's role {held}"
            ),
            Escalation::Role {
                requested,
                held: None,
            } => write!(
                f,
                "Cannot grant role {requested}: it exceeds the issuer's permissions"
            ),
            Escalation::Scope {
                requested: Scope::Account,
                ..
            } => f.write_str("Project-scoped issuers cannot create account-wide API keys"),
            Escalation::Scope { .. } => {
                f.write_str("Cannot create an API key for a project outside the issuer's scope")
            }
            Escalation::Expiry { limit, .. } => write!(
                f,
                "Cannot create an API key that outlives its issuer (which expires at {limit})"
            ),
            Escalation::RateLimit { limit, .. } => write!(
                f,
                "Cannot create an API key with a looser rate limit than its issuer's ({} requests \
                 per {} seconds, bursts of {})",
                limit.requests(),
                limit.period().as_secs(),
                limit.burst()
            ),
            Escalation::AllowedAddresses { held, .. } => write!(
                f,
                "Cannot create an API key usable from addresses outside its issuer's ({})",
                join_ranges(held)
            ),
        }
    }
}

/// Ranges as a comma-separated list, for messages.
pub(crate) fn join_ranges(ranges: &[AddressRange]) -> String {
    ranges
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// Why no key was issued. As a [`Refusal`](crate::Refusal): 422 `{"errors": [...]}` for a
/// malformed request, 403 `{"error": "..."}` for an escalation, 401 for an inactive issuing key.
///
/// ```
/// use keygate::{issue, AccountId, Catalog, Issuer, KeySpec, Refusal, Scope, Timestamp};
/// use rand::SeedableRng;
/// let catalog = Catalog::read_write_delete();
/// let member = Issuer::user_with_role(&catalog, AccountId::from_u64(1), Scope::Account, "member")?;
/// let mut rng = rand::rngs::StdRng::seed_from_u64(0);
/// let now = Timestamp::from_unix_seconds(1_000);
///
/// let err = issue(&catalog, &member, KeySpec::named(" ").permissions(["fly"]), now, &mut rng)
///     .unwrap_err();
/// assert_eq!(err.status(), 422);
/// assert_eq!(
///     serde_json::to_string(&err.body(&catalog))?,
///     r#"{"errors":["Name can't be blank","Unknown permission: fly"]}"#
/// );
///
/// let err = issue(&catalog, &member, KeySpec::named("w").permissions(["write"]), now, &mut rng)
///     .unwrap_err();
/// assert_eq!(err.status(), 403);
/// assert_eq!(
///     serde_json::to_string(&err.body(&catalog))?,
///     r#"{"error":"Cannot grant permissions the issuer does not hold: write"}"#
/// );
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum IssueError {
    /// The request is malformed: 422 with every problem found.
    #[error("invalid key request: {0}")]
    Invalid(ValidationErrors),
    /// The request reaches beyond the issuer: 403 with every way it does.
    #[error("escalation refused: {}", join(.0))]
    Escalation(Vec<Escalation>),
    /// The issuing key may not issue: revoked or expired (401), or lacking the key-management
    /// permission (403). From [`Issuer::key`](crate::Issuer::key).
    #[error("issuing key refused: {0}")]
    IssuerKey(Deny),
    /// The catalog defines neither `api-keys:write` nor `write`, so no key may issue keys. 403.
    #[error("the catalog defines no key-management permission")]
    NoKeyManagementPermission,
}

pub(crate) fn join(escalations: &[Escalation]) -> String {
    escalations
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}
