//! Every refusal keygate produces, as an HTTP status and a JSON body in the API's shape.

use std::borrow::Cow;

use serde::Serialize;

use crate::catalog::Catalog;
use crate::credits::UsageExceeded;
use crate::decision::Deny;
use crate::issue::{IssueError, ManageError, ValidationErrors, manage_message, widening_message};
use crate::key::LifecycleError;
use crate::keyring::KeyringError;
use crate::limits::Throttled;
use crate::quota::QuotaError;
use crate::ratelimit::RetryAfter;

/// A refusal that becomes an HTTP response: a status and a JSON body.
///
/// Every refusal keygate produces, as an HTTP status and a JSON body in the API's shape.
///
/// One trait, [`Refusal`], is implemented by each error a request can end in: a failed decision
/// ([`Deny`]), a refused key request ([`IssueError`]), a malformed one ([`ValidationErrors`]), a
/// tier quota ([`QuotaError`]) and a rate limit ([`RetryAfter`]). Each body is one of the three
/// shapes of IdentityCall's public API, [`ResponseBody`]:
///
/// | shape | used for |
/// |---|---|
/// | `{"error": "..."}` | 401, 403, 404 |
/// | `{"errors": ["...", ...]}` | 422, every malformed field |
/// | `{"error": "Rate limit exceeded", "retry_after": N}` | 429, with a `Retry-After: N` header |
/// | `{"error": "Usage exceeded", "code": "USAGE_EXCEEDED"}` | 429 for spent credits (Unkey's code), with `retry_after` and the header when a refill will come |
///
/// ```
/// use keygate::{Catalog, Deny, Refusal};
/// let catalog = Catalog::read_write_delete();
/// let write = catalog.permission("write").unwrap();
/// let deny = Deny::MissingPermission(write);
/// assert_eq!(deny.status(), 403);
/// assert_eq!(serde_json::to_string(&deny.body(&catalog))?,
///     r#"{"error":"Write permission required"}"#);
/// # Ok::<(), serde_json::Error>(())
/// ```
///
/// The catalog is what turns a [`Permission`](crate::Permission) into its name in a message; the
/// refusals that name no permission ignore it.
pub trait Refusal {
    /// The HTTP status code.
    fn status(&self) -> u16;

    /// The JSON body.
    fn body(&self, catalog: &Catalog) -> ResponseBody;

    /// Whole seconds after which the request may succeed, for a `Retry-After` header: only rate
    /// limits have one.
    fn retry_after(&self) -> Option<u64> {
        None
    }
}

/// The JSON body of an error response: `{"error": "..."}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ErrorBody {
    /// The human-readable message.
    pub error: Cow<'static, str>,
}

impl ErrorBody {
    /// `{"error": message}`.
    pub fn new(message: impl Into<Cow<'static, str>>) -> Self {
        Self {
            error: message.into(),
        }
    }
}

/// The 429 body: `{"error": "Rate limit exceeded", "retry_after": N}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RateLimitBody {
    /// Always `"Rate limit exceeded"`.
    pub error: Cow<'static, str>,
    /// Whole seconds to wait.
    pub retry_after: u64,
}

/// Any refusal's JSON body, serialized as the shape it holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum ResponseBody {
    /// `{"error": "..."}`.
    Error(ErrorBody),
    /// `{"errors": [...]}`.
    Errors(ValidationErrors),
    /// `{"error": "Rate limit exceeded", "retry_after": N}`.
    RateLimited(RateLimitBody),
    /// `{"error": "Usage exceeded", "code": "USAGE_EXCEEDED"}`, with `"retry_after": N` when a
    /// refill will come.
    UsageExceeded(UsageExceededBody),
}

/// The 429 body of spent credits: `{"error": "Usage exceeded", "code": "USAGE_EXCEEDED"}`, and
/// `"retry_after": N` (seconds to the next refill) when one will come. The `code` tells it apart
/// from a rate limit's 429: waiting a little will not help, a refill or a top-up will.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UsageExceededBody {
    /// Always `"Usage exceeded"`.
    pub error: Cow<'static, str>,
    /// Always `"USAGE_EXCEEDED"`.
    pub code: Cow<'static, str>,
    /// Whole seconds to the next refill; absent when none will come.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_after: Option<u64>,
}

impl ResponseBody {
    /// The message of an `{"error": ...}` body (also a 429's), or the messages of a 422's joined
    /// with `"; "`: for logs and tests.
    pub fn message(&self) -> Cow<'_, str> {
        match self {
            ResponseBody::Error(body) => Cow::Borrowed(&body.error),
            ResponseBody::RateLimited(body) => Cow::Borrowed(&body.error),
            ResponseBody::UsageExceeded(body) => Cow::Borrowed(&body.error),
            ResponseBody::Errors(errors) => Cow::Owned(errors.messages().join("; ")),
        }
    }
}

impl Refusal for Deny {
    /// 401 for an unknown, revoked or expired key; 404 for another account's or another project's
    /// resource; 403 for a disallowed address, an account-level action or a missing permission.
    fn status(&self) -> u16 {
        match self {
            Deny::UnknownKey | Deny::Revoked | Deny::Expired => 401,
            Deny::OtherAccount | Deny::OutOfScope => 404,
            Deny::AddressNotAllowed | Deny::AccountLevelAction | Deny::MissingPermission(_) => 403,
        }
    }

    /// `{"error": message}`, with [`Deny::message`].
    fn body(&self, catalog: &Catalog) -> ResponseBody {
        ResponseBody::Error(ErrorBody::new(self.message(catalog)))
    }
}

impl Refusal for IssueError {
    /// 422 for [`IssueError::Invalid`], 401 for an inactive issuing key, 403 otherwise.
    fn status(&self) -> u16 {
        match self {
            IssueError::Invalid(_) => 422,
            IssueError::IssuerKey(deny) => deny.status(),
            IssueError::Escalation(_) | IssueError::NoKeyManagementPermission => 403,
        }
    }

    /// `{"errors": [...]}` for 422, `{"error": "..."}` otherwise. The catalog names the missing
    /// permission of an [`IssuerKey`](IssueError::IssuerKey) refusal
    /// (`"Permission api-keys:write required"`, `"Write permission required"`).
    fn body(&self, catalog: &Catalog) -> ResponseBody {
        match self {
            IssueError::Invalid(errors) => ResponseBody::Errors(errors.clone()),
            IssueError::Escalation(escalations) => {
                ResponseBody::Error(ErrorBody::new(crate::issue::join(escalations)))
            }
            IssueError::IssuerKey(deny) => deny.body(catalog),
            IssueError::NoKeyManagementPermission => {
                ResponseBody::Error(ErrorBody::new("API key management permission required"))
            }
        }
    }
}

impl Refusal for ValidationErrors {
    /// 422.
    fn status(&self) -> u16 {
        422
    }

    /// `{"errors": [...]}`.
    fn body(&self, _: &Catalog) -> ResponseBody {
        ResponseBody::Errors(self.clone())
    }
}

impl Refusal for QuotaError {
    /// 403.
    fn status(&self) -> u16 {
        403
    }

    /// `{"error": "Project limit reached"}` (or `"API key limit reached"`, `"End user limit
    /// reached"`).
    fn body(&self, _: &Catalog) -> ResponseBody {
        ResponseBody::Error(ErrorBody::new(self.to_string()))
    }
}

impl Refusal for RetryAfter {
    /// 429.
    fn status(&self) -> u16 {
        429
    }

    /// `{"error": "Rate limit exceeded", "retry_after": N}` (IdentityCall's API).
    fn body(&self, _: &Catalog) -> ResponseBody {
        ResponseBody::RateLimited(RateLimitBody {
            error: "Rate limit exceeded".into(),
            retry_after: self.seconds(),
        })
    }

    fn retry_after(&self) -> Option<u64> {
        Some(self.seconds())
    }
}

impl Refusal for UsageExceeded {
    /// 429.
    fn status(&self) -> u16 {
        429
    }

    /// `{"error": "Usage exceeded", "code": "USAGE_EXCEEDED"}`, with `retry_after` when a refill
    /// will come.
    fn body(&self, _: &Catalog) -> ResponseBody {
        ResponseBody::UsageExceeded(UsageExceededBody {
            error: "Usage exceeded".into(),
            code: "USAGE_EXCEEDED".into(),
            retry_after: self.retry_after_seconds(),
        })
    }

    fn retry_after(&self) -> Option<u64> {
        self.retry_after_seconds()
    }
}

impl Refusal for Throttled {
    /// 429, either way.
    fn status(&self) -> u16 {
        match self {
            Throttled::RateLimited(retry) => retry.status(),
            Throttled::UsageExceeded(exceeded) => exceeded.status(),
        }
    }

    /// The rate limit's body or the credits' body.
    fn body(&self, catalog: &Catalog) -> ResponseBody {
        match self {
            Throttled::RateLimited(retry) => retry.body(catalog),
            Throttled::UsageExceeded(exceeded) => exceeded.body(catalog),
        }
    }

    fn retry_after(&self) -> Option<u64> {
        match self {
            Throttled::RateLimited(retry) => retry.retry_after(),
            Throttled::UsageExceeded(exceeded) => exceeded.retry_after(),
        }
    }
}

impl Refusal for ManageError {
    /// 404 out of reach, 401 for an inactive calling key, 403 for a missing permission or an
    /// escalation, 422 for a malformed update, 409 for rotating a revoked key.
    fn status(&self) -> u16 {
        match self {
            ManageError::NotFound => 404,
            ManageError::CallerKey(deny) => deny.status(),
            ManageError::NoKeyManagementPermission
            | ManageError::ManageOthers { .. }
            | ManageError::Escalation(_)
            | ManageError::Widening(_) => 403,
            ManageError::Invalid(_) => 422,
            ManageError::TargetRevoked => 409,
        }
    }

    /// `{"error": "..."}`, or `{"errors": [...]}` for 422.
    fn body(&self, catalog: &Catalog) -> ResponseBody {
        let error = |message: String| ResponseBody::Error(ErrorBody::new(message));
        match self {
            ManageError::NotFound => error("Not found".to_owned()),
            ManageError::CallerKey(deny) => deny.body(catalog),
            ManageError::NoKeyManagementPermission => {
                error("API key management permission required".to_owned())
            }
            ManageError::ManageOthers { name, .. } => error(format!("Permission {name} required")),
            ManageError::Escalation(escalations) => error(manage_message(escalations)),
            ManageError::Widening(escalations) => error(widening_message(escalations)),
            ManageError::Invalid(errors) => ResponseBody::Errors(errors.clone()),
            ManageError::TargetRevoked => error("API key is revoked".to_owned()),
        }
    }
}

impl Refusal for KeyringError {
    /// 404 for an unknown key id, 409 for a change that conflicts with the keys held (a duplicate
    /// id or token, a revoked key rotated, a wrong permit, a full keyring).
    fn status(&self) -> u16 {
        match self {
            KeyringError::UnknownKeyId(_) => 404,
            _ => 409,
        }
    }

    /// `{"error": "Not found"}`, `{"error": "API key is revoked"}`, or
    /// `{"error": "Conflicting API key change"}`: never an id or a hash.
    fn body(&self, _: &Catalog) -> ResponseBody {
        ResponseBody::Error(ErrorBody::new(match self {
            KeyringError::UnknownKeyId(_) => "Not found",
            KeyringError::Lifecycle(LifecycleError::Revoked) => "API key is revoked",
            _ => "Conflicting API key change",
        }))
    }
}

impl Refusal for LifecycleError {
    /// 409.
    fn status(&self) -> u16 {
        409
    }

    /// `{"error": "API key is revoked"}`.
    fn body(&self, _: &Catalog) -> ResponseBody {
        ResponseBody::Error(ErrorBody::new("API key is revoked"))
    }
}
