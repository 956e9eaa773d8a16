//! What [`authorize`](crate::authorize()) answers, and how each answer becomes an HTTP response.
//!
//! A [`Deny`] names the first rule that failed, so a server can log the real reason; the HTTP
//! status and body deliberately merge reasons a client must not tell apart (a revoked key and an
//! unknown one are both 401; another tenant's resource and a missing one are both 404).

use std::borrow::Cow;

use crate::catalog::{Catalog, Permission};

/// The answer to "may this key do this action on this resource now?".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[must_use = "a decision that is not checked authorizes nothing"]
pub enum Decision {
    /// Every rule passed.
    Allow,
    /// A rule failed; the first failing one, in the order of [`Deny`]'s variants.
    Deny(Deny),
}

impl Decision {
    /// Whether the request may proceed.
    pub fn is_allowed(&self) -> bool {
        matches!(self, Decision::Allow)
    }

    /// `Ok(())` for allow, so a handler can write `authorize(..).into_result()?`.
    pub fn into_result(self) -> Result<(), Deny> {
        match self {
            Decision::Allow => Ok(()),
            Decision::Deny(deny) => Err(deny),
        }
    }
}

/// Why a request was refused, in the order the rules are checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
pub enum Deny {
    /// No key matches the presented token, or the token is missing or malformed. 401.
    #[error("unknown or malformed API key")]
    UnknownKey,
    /// The key was revoked. 401.
    #[error("API key revoked")]
    Revoked,
    /// The key's expiry has passed (`expires_at <= now`). 401.
    #[error("API key expired")]
    Expired,
    /// The key is restricted to address ranges and the request came from outside them, or from
    /// an address the server did not give. 403: the key is real, so the client may learn that it
    /// is refused from here, but nothing about the resource.
    #[error("API key not allowed from this address")]
    AddressNotAllowed,
    /// The resource belongs to another account. 404: never confirm another tenant's resource.
    #[error("resource belongs to another account")]
    OtherAccount,
    /// A project-scoped key attempted an account-level action (creating or destroying a project).
    /// 403, with IdentityCall's message.
    #[error("project-scoped key on an account-level action")]
    AccountLevelAction,
    /// A project-scoped key reached outside its project. 404.
    #[error("resource outside the key's project")]
    OutOfScope,
    /// The key lacks the action's permission. 403.
    #[error("missing permission")]
    MissingPermission(Permission),
}

impl Deny {
    /// The message a client sees. A bare permission name (`read`) reads
    /// `"Read permission required"` as in IdentityCall's API; a `resource:action` name reads
    /// `"Permission agents:write required"`.
    ///
    /// ```
    /// use keygate::{Catalog, Deny};
    /// let catalog = Catalog::read_write_delete();
    /// let write = catalog.permission("write").unwrap();
    /// assert_eq!(Deny::MissingPermission(write).message(&catalog), "Write permission required");
    /// assert_eq!(Deny::Expired.message(&catalog), "Invalid or expired API key");
    /// ```
    pub fn message(&self, catalog: &Catalog) -> Cow<'static, str> {
        match self {
            Deny::UnknownKey | Deny::Revoked | Deny::Expired => "Invalid or expired API key".into(),
            Deny::OtherAccount | Deny::OutOfScope => "Not found".into(),
            Deny::AddressNotAllowed => "API key not allowed from this address".into(),
            Deny::AccountLevelAction => {
                "Project-scoped API keys cannot create or destroy projects".into()
            }
            Deny::MissingPermission(p) => match catalog.name(*p) {
                Some(name) if !name.contains(':') => {
                    let mut chars = name.chars();
                    let first = chars.next().map(|c| c.to_ascii_uppercase());
                    format!(
                        "{}{} permission required",
                        first.unwrap_or_default(),
                        chars.as_str()
                    )
                    .into()
                }
                Some(name) => format!("Permission {name} required").into(),
                // A permission from another catalog: say no more than that access is refused.
                None => "Permission required".into(),
            },
        }
    }
}
