//! A key's stored form ([`ApiKeyRecord`]) and its secret-free view ([`KeyView`]).

use serde::{Deserialize, Serialize};

use super::{ApiKey, KeyId, RetiredSecret};
use crate::address::{AddressRange, AllowedAddresses};
use crate::catalog::{Catalog, CatalogError};
use crate::credits::Credits;
use crate::limits::NamedLimit;
use crate::ratelimit::RateLimit;
use crate::scope::{AccountId, ProjectId, Scope};
use crate::timestamp::Timestamp;
use crate::token::TokenHash;

impl ApiKey {
    /// The storable record, with permission names resolved through `catalog`.
    pub fn to_record(&self, catalog: &Catalog) -> ApiKeyRecord {
        ApiKeyRecord {
            id: self.id,
            name: self.name.clone(),
            account_id: self.account,
            project_id: self.scope.get(),
            permissions: catalog
                .names(&self.permissions)
                .map(str::to_owned)
                .collect(),
            token_hash: self.token_hash,
            retired_secret: self.retired,
            created_at: self.created_at,
            expires_at: self.expires_at.get(),
            revoked_at: self.revoked_at,
            rate_limit: self.rate_limit,
            role: self.role.clone(),
            tags: self.tags.clone(),
            comment: self.comment.clone(),
            created_by: self.created_by.clone(),
            issued_by: self.issued_by,
            role_ceiling: self.role_ceiling.clone(),
            allowed_addresses: self.allowed_addresses().to_vec(),
            credits: self.credits,
            limits: self.limits.clone(),
        }
    }

    /// Loads a record. Every permission name must be one `catalog` defines, and it holds at most
    /// [`MAX_ADDRESS_RANGES`](crate::MAX_ADDRESS_RANGES) address ranges.
    pub fn from_record(record: ApiKeyRecord, catalog: &Catalog) -> Result<Self, CatalogError> {
        let permissions = catalog.resolve(&record.permissions)?;
        // Never drop a restriction to load a record: too many ranges is an error, not "anywhere".
        let allowed_addresses = AllowedAddresses::from_ranges(&record.allowed_addresses)
            .ok_or(CatalogError::TooManyAddressRanges)?;
        NamedLimit::check_set(&record.limits)?;
        Ok(Self {
            id: record.id,
            name: record.name,
            account: record.account_id,
            scope: record
                .project_id
                .map_or(Scope::Account, Scope::Project)
                .into(),
            permissions,
            token_hash: record.token_hash,
            retired: record.retired_secret,
            created_at: record.created_at,
            expires_at: record.expires_at.into(),
            revoked_at: record.revoked_at,
            rate_limit: record.rate_limit,
            role: record.role,
            tags: record.tags,
            comment: record.comment,
            created_by: record.created_by,
            issued_by: record.issued_by,
            role_ceiling: record.role_ceiling,
            allowed_addresses,
            credits: record.credits,
            limits: record.limits,
        })
    }
}

impl ApiKey {
    /// A serializable view of the key for API responses and logs: everything but its secrets
    /// (no token, no token hash), permissions by name.
    ///
    /// ```
    /// use keygate::{AccountId, ApiKey, Catalog, KeyId, Scope, Timestamp, TokenHash};
    /// let catalog = Catalog::read_write_delete();
    /// let key = ApiKey::new(KeyId::from_bytes([1; 16]), "Backend", AccountId::from_u64(7),
    ///     Scope::Account, catalog.expand(["read"])?, TokenHash::of("idc_x"), Timestamp::EPOCH);
    /// let json = serde_json::to_value(key.view(&catalog))?;
    /// assert_eq!(json["permissions"], serde_json::json!(["read"]));
    /// assert!(json.get("token_hash").is_none());
    /// assert!(!json.to_string().contains(&key.token_hash().to_string()));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn view<'a>(&'a self, catalog: &'a Catalog) -> KeyView<'a> {
        KeyView {
            id: self.id,
            name: &self.name,
            account_id: self.account,
            project_id: self.scope.get(),
            permissions: catalog.names(&self.permissions).collect(),
            role: self.role.as_deref(),
            created_at: self.created_at,
            expires_at: self.expires_at.get(),
            revoked_at: self.revoked_at,
            rate_limit: self.rate_limit,
            tags: &self.tags,
            comment: self.comment.as_deref(),
            created_by: self.created_by.as_deref(),
            issued_by: self.issued_by,
            allowed_addresses: self.allowed_addresses(),
            credits: self.credits,
            limits: &self.limits,
        }
    }
}

/// What [`ApiKey::view`] shows: a key without its secrets.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KeyView<'a> {
    /// The key's id.
    pub id: KeyId,
    /// Display name.
    pub name: &'a str,
    /// Owning account.
    pub account_id: AccountId,
    /// The project of a project-scoped key (`null` for an account-wide key).
    pub project_id: Option<ProjectId>,
    /// Granted permission names, sorted.
    pub permissions: Vec<&'a str>,
    /// Role it was issued with.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role: Option<&'a str>,
    /// Creation time.
    pub created_at: Timestamp,
    /// Expiry (exclusive).
    pub expires_at: Option<Timestamp>,
    /// Revocation time.
    pub revoked_at: Option<Timestamp>,
    /// Rate limit.
    pub rate_limit: Option<RateLimit>,
    /// Tags.
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    pub tags: &'a [String],
    /// Comment.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub comment: Option<&'a str>,
    /// Creator.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub created_by: Option<&'a str>,
    /// The key that issued it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub issued_by: Option<KeyId>,
    /// The client address ranges it may be used from (absent: anywhere).
    #[serde(skip_serializing_if = "<[AddressRange]>::is_empty")]
    pub allowed_addresses: &'a [AddressRange],
    /// The credit budget (absent: unlimited).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub credits: Option<Credits>,
    /// Named rate limits.
    #[serde(skip_serializing_if = "<[NamedLimit]>::is_empty")]
    pub limits: &'a [NamedLimit],
}

impl crate::scope::Resource {
    /// The resource a key *record* is, for authorizing access to it with
    /// [`authorize`](crate::authorize()): an account-wide key is an account-level resource
    /// (reached only by account-wide keys), a project-scoped key is inside its project.
    ///
    /// ```
    /// use keygate::{AccountId, ApiKey, KeyId, PermissionSet, ProjectId, Resource, Scope,
    ///     Timestamp, TokenHash};
    /// let (a, p) = (AccountId::from_u64(1), ProjectId::from_u64(2));
    /// let key = ApiKey::new(KeyId::from_bytes([1; 16]), "k", a, Scope::Project(p),
    ///     PermissionSet::EMPTY, TokenHash::of("x"), Timestamp::EPOCH);
    /// assert_eq!(Resource::of_key(&key), Resource::in_project(a, p));
    /// ```
    pub fn of_key(key: &ApiKey) -> Self {
        match key.scope() {
            Scope::Account => Self::account(key.account()),
            Scope::Project(project) => Self::in_project(key.account(), project),
        }
    }
}

/// The stored form of an [`ApiKey`].
///
/// ```
/// use keygate::{ApiKeyRecord, Catalog};
/// let json = r#"{
///   "id": "1234567890abcdef1234567890abcdef",
///   "name": "Backend",
///   "account_id": 7,
///   "project_id": 42,
///   "permissions": ["read", "write"],
///   "token_hash": "47DEQpj8HBSa-_TImW-5JCeuQeRkm5NMpJWZG3hSuFU",
///   "created_at": "2026-04-15T10:00:00Z",
///   "expires_at": null
/// }"#;
/// let record: ApiKeyRecord = serde_json::from_str(json)?;
/// let key = keygate::ApiKey::from_record(record, &Catalog::read_write_delete())?;
/// assert_eq!(key.scope().project().map(|p| p.to_string()).as_deref(), Some("42"));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiKeyRecord {
    /// The key's id.
    pub id: KeyId,
    /// Display name.
    pub name: String,
    /// Owning account.
    pub account_id: AccountId,
    /// The project of a project-scoped key; absent or null for an account-wide key.
    #[serde(default)]
    pub project_id: Option<ProjectId>,
    /// Granted permission names, sorted.
    pub permissions: Vec<String>,
    /// SHA-256 of the current token, base64url.
    pub token_hash: TokenHash,
    /// The previous secret during a rotation grace period.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retired_secret: Option<RetiredSecret>,
    /// Creation time.
    pub created_at: Timestamp,
    /// Expiry, exclusive.
    #[serde(default)]
    pub expires_at: Option<Timestamp>,
    /// Revocation time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked_at: Option<Timestamp>,
    /// Rate limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<RateLimit>,
    /// Role the key was issued with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    /// Tags.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    /// Comment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    /// Creator.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_by: Option<String>,
    /// The key that issued this one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issued_by: Option<KeyId>,
    /// The role ceiling inherited from the issuer, for a key issued without a role.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role_ceiling: Option<String>,
    /// The client address ranges the key may be used from, at most
    /// [`MAX_ADDRESS_RANGES`](crate::MAX_ADDRESS_RANGES); absent or empty: anywhere (so records
    /// written before address restrictions load unchanged).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allowed_addresses: Vec<AddressRange>,
    /// The credit budget; absent: unlimited.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credits: Option<Credits>,
    /// Named rate limits, at most [`MAX_NAMED_LIMITS`](crate::MAX_NAMED_LIMITS) with unique
    /// names; absent: none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub limits: Vec<NamedLimit>,
}
