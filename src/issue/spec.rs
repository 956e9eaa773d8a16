//! What a new key should be ([`KeySpec`]), and its validation into a well-formed request.

use core::time::Duration;

use crate::address::{AddressRange, MAX_ADDRESS_RANGES};
use crate::catalog::{Catalog, CatalogError, PermissionSet, Role};
use crate::issue::ValidationErrors;
use crate::key::ApiKey;
use crate::ratelimit::RateLimit;
use crate::scope::Scope;
use crate::timestamp::Timestamp;
use crate::token::{Token, TokenFormat};

/// The longest key name accepted, in characters.
pub const MAX_KEY_NAME_LEN: usize = 100;
/// The longest comment accepted, in characters.
pub const MAX_COMMENT_LEN: usize = 500;
/// The most tags one key may carry.
pub const MAX_TAGS: usize = 20;
/// The longest tag accepted, in characters.
pub const MAX_TAG_LEN: usize = 64;
/// The longest creator id (an issuer's user id) accepted, in characters.
pub const MAX_CREATED_BY_LEN: usize = 255;

/// How much of a caller's input a message echoes back: the input may be arbitrarily long.
pub(super) const ECHO_LEN: usize = 64;

/// What the new key should be. Everything but the name is optional, and the defaults are the
/// issuer's: its full permission set, its scope, and (for a key issuer) its expiry.
///
/// ```
/// use keygate::{KeySpec, ProjectId, RateLimit};
/// use std::time::Duration;
/// let spec = KeySpec::named("CI")
///     .permissions(["agents:*", "calls:read"])
///     .project(ProjectId::from_u64(42))
///     .ttl(Duration::from_secs(86_400))
///     .rate_limit(RateLimit::per_period(100, 60)?)
///     .tag("ci")
///     .comment("nightly build");
/// assert_eq!(spec.name(), "CI");
/// # Ok::<(), keygate::RateLimitError>(())
/// ```
///
/// It is also the JSON body of a create-key request (every field optional but `name`, unknown
/// fields refused); a malformed `expires_at` or `rate_limit` is reported by
/// [`issue`](crate::issue()) with the
/// rest of the request's problems (422), not by the parser. Who creates the key is never part of
/// it: that is the authenticated issuer.
///
/// ```
/// use keygate::{issue, AccountId, Catalog, Issuer, KeySpec, Refusal, Scope, Timestamp};
/// use rand::SeedableRng;
/// let spec: KeySpec = serde_json::from_str(r#"{"name": "Support reader",
///     "permissions": ["read"], "project_id": 1, "ttl_seconds": 3600,
///     "rate_limit": {"requests": 100, "period_seconds": 60}}"#)?;
/// let catalog = Catalog::read_write_delete();
/// let owner = Issuer::user(AccountId::from_u64(1), Scope::Account, catalog.all());
/// let now = Timestamp::from_unix_seconds(1_000);
/// let key = issue(&catalog, &owner, spec, now, &mut rand::rngs::StdRng::seed_from_u64(0))?.key;
/// assert_eq!(key.rate_limit().map(|r| r.requests()), Some(100));
///
/// let bad: KeySpec = serde_json::from_str(r#"{"name": "", "expires_at": "tomorrow",
///     "rate_limit": {"requests": 0, "period_seconds": 60}}"#)?;
/// let err = issue(&catalog, &owner, bad, now, &mut rand::rngs::StdRng::seed_from_u64(0))
///     .unwrap_err();
/// assert_eq!(err.status(), 422);
/// assert_eq!(serde_json::to_string(&err.body(&catalog))?, r#"{"errors":["Name can't be blank","Expires at must be an RFC 3339 date-time","Rate limit requests must be at least 1"]}"#);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(from = "KeySpecBody")]
pub struct KeySpec {
    pub(super) name: String,
    pub(super) permissions: Option<Vec<String>>,
    pub(super) role: Option<String>,
    pub(super) scope: Option<Scope>,
    pub(super) expires_at: Option<Timestamp>,
    pub(super) ttl: Option<Duration>,
    pub(super) rate_limit: Option<RateLimit>,
    pub(super) tags: Vec<String>,
    pub(super) comment: Option<String>,
    /// CIDR ranges as written; parsed by validation, so a malformed one is a 422.
    pub(super) allowed_addresses: Option<Vec<String>>,
    pub(super) credits: Option<crate::credits::Credits>,
    pub(super) limits: Vec<crate::limits::NamedLimit>,
    pub(super) format: TokenFormat,
    /// What a JSON body got wrong that a builder cannot: reported with the validation errors.
    pub(super) malformed: Vec<String>,
}

/// The JSON body of a create-key request, before it becomes a [`KeySpec`].
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct KeySpecBody {
    #[serde(default)]
    name: String,
    permissions: Option<Vec<String>>,
    role: Option<String>,
    project_id: Option<crate::scope::ProjectId>,
    expires_at: Option<String>,
    ttl_seconds: Option<u64>,
    rate_limit: Option<crate::ratelimit::RateLimitSpec>,
    #[serde(default)]
    tags: Vec<String>,
    comment: Option<String>,
    allowed_addresses: Option<Vec<String>>,
    credits: Option<crate::credits::Credits>,
    #[serde(default)]
    limits: Vec<crate::limits::NamedLimit>,
}

impl From<KeySpecBody> for KeySpec {
    fn from(body: KeySpecBody) -> Self {
        let mut spec = KeySpec::named(body.name);
        spec.permissions = body.permissions;
        spec.role = body.role;
        spec.scope = body.project_id.map(Scope::Project);
        spec.ttl = body.ttl_seconds.map(Duration::from_secs);
        spec.tags = body.tags;
        spec.comment = body.comment;
        spec.allowed_addresses = body.allowed_addresses;
        spec.credits = body.credits;
        spec.limits = body.limits;
        if let Some(text) = body.expires_at {
            match text.parse::<Timestamp>() {
                Ok(at) => spec.expires_at = Some(at),
                Err(_) => spec
                    .malformed
                    .push("Expires at must be an RFC 3339 date-time".to_owned()),
            }
        }
        if let Some(limit) = body.rate_limit {
            match RateLimit::try_from(limit) {
                Ok(limit) => spec.rate_limit = Some(limit),
                Err(e) => {
                    // "rate limit requests must be at least 1" as a sentence.
                    let text = e.to_string();
                    let mut chars = text.chars();
                    let first = chars.next().map(|c| c.to_ascii_uppercase());
                    spec.malformed
                        .push(format!("{}{}", first.unwrap_or_default(), chars.as_str()));
                }
            }
        }
        spec
    }
}

impl KeySpec {
    /// A key called `name` (stored trimmed), with every other setting at its default.
    pub fn named(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            permissions: None,
            role: None,
            scope: None,
            expires_at: None,
            ttl: None,
            rate_limit: None,
            tags: Vec::new(),
            comment: None,
            allowed_addresses: None,
            credits: None,
            limits: Vec::new(),
            format: TokenFormat::default(),
            malformed: Vec::new(),
        }
    }

    /// Permission names or patterns (`agents:*`, `*:read`, `*`), expanded against the catalog.
    /// Without this the key gets its role's permissions, or else the issuer's full set.
    pub fn permissions<I, S>(mut self, patterns: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.permissions = Some(patterns.into_iter().map(Into::into).collect());
        self
    }

    /// A catalog role (Deepgram's scopes, such as `member`). The key gets the role's permissions,
    /// narrowed to [`permissions`](Self::permissions) if those are given too (they must then lie
    /// within the role).
    pub fn role(mut self, role: impl Into<String>) -> Self {
        self.role = Some(role.into());
        self
    }

    /// Confines the key to one project.
    pub fn project(self, project: crate::scope::ProjectId) -> Self {
        self.scope(Scope::Project(project))
    }

    /// Asks for an account-wide key (only an account-wide issuer may grant it).
    pub fn account_wide(self) -> Self {
        self.scope(Scope::Account)
    }

    /// Sets the scope. Without this the key gets the issuer's scope: account-wide from an
    /// account-wide issuer, the issuer's project from a project-scoped one.
    pub fn scope(mut self, scope: Scope) -> Self {
        self.scope = Some(scope);
        self
    }

    /// Expires at this instant (exclusive). Not together with [`ttl`](Self::ttl).
    pub fn expires_at(mut self, expires_at: Timestamp) -> Self {
        self.expires_at = Some(expires_at);
        self
    }

    /// Expires this long after it is issued. Not together with [`expires_at`](Self::expires_at).
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl = Some(ttl);
        self
    }

    /// [`ttl`](Self::ttl) in whole seconds, as request bodies carry it.
    pub fn ttl_seconds(self, seconds: u64) -> Self {
        self.ttl(Duration::from_secs(seconds))
    }

    /// The key's rate limit (the voice-agent platform's rate-limit configuration).
    pub fn rate_limit(mut self, rate_limit: RateLimit) -> Self {
        self.rate_limit = Some(rate_limit);
        self
    }

    /// Adds a tag (Deepgram's project keys).
    pub fn tag(mut self, tag: impl Into<String>) -> Self {
        self.tags.push(tag.into());
        self
    }

    /// Adds tags (Deepgram's project keys).
    pub fn tags<I, S>(mut self, tags: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.tags.extend(tags.into_iter().map(Into::into));
        self
    }

    /// A comment stored on the key (Deepgram's project keys).
    pub fn comment(mut self, comment: impl Into<String>) -> Self {
        self.comment = Some(comment.into());
        self
    }

    /// Restricts the key to clients in these CIDR ranges, IPv4 or IPv6 (`"10.0.0.0/8"`,
    /// `"2001:db8::/32"`, a bare address for one), at most [`MAX_ADDRESS_RANGES`]. A request from
    /// elsewhere, or from an address the server does not know, is refused with
    /// [`Deny::AddressNotAllowed`](crate::Deny::AddressNotAllowed) (403). A malformed range, too
    /// many, or an empty list is a 422. Without this a key issued by a key inherits its ranges; a
    /// key's ranges must each lie inside one of its issuer's.
    ///
    /// ```
    /// use keygate::{issue, AccountId, Catalog, Issuer, KeySpec, Scope, Timestamp};
    /// use rand::SeedableRng;
    /// let catalog = Catalog::read_write_delete();
    /// let owner = Issuer::user(AccountId::from_u64(1), Scope::Account, catalog.all());
    /// let spec = KeySpec::named("office").allowed_addresses(["10.0.0.0/8", "2001:db8::/32"]);
    /// let key = issue(&catalog, &owner, spec, Timestamp::EPOCH,
    ///     &mut rand::rngs::StdRng::seed_from_u64(0))?.key;
    /// assert_eq!(key.allowed_addresses()[0].to_string(), "10.0.0.0/8");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn allowed_addresses<I, S>(mut self, ranges: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.allowed_addresses = Some(ranges.into_iter().map(Into::into).collect());
        self
    }

    /// A credit budget (after Unkey's `remaining` with refill): see [`Credits`](crate::Credits).
    /// A key issued by a key also spends its issuer's credits, so its own can only narrow them.
    pub fn credits(mut self, credits: crate::credits::Credits) -> Self {
        self.credits = Some(credits);
        self
    }

    /// Adds a named rate limit, charged with the key's own limit; at most
    /// [`MAX_NAMED_LIMITS`](crate::MAX_NAMED_LIMITS), with unique names (else a 422). A key
    /// issued by a key is also charged its issuer's limits, so its own can only narrow them.
    pub fn limit(mut self, limit: crate::limits::NamedLimit) -> Self {
        self.limits.push(limit);
        self
    }

    /// The token format; [`TokenFormat::default`] (`idc_` + 32 alphanumerics) if not set.
    pub fn format(mut self, format: TokenFormat) -> Self {
        self.format = format;
        self
    }

    /// The requested name.
    pub fn name(&self) -> &str {
        &self.name
    }
}

/// A freshly issued key and its token. The token is the only copy of the secret: show it once,
/// store only [`ApiKey::token_hash`].
#[derive(Debug)]
pub struct IssuedKey {
    /// The record to store.
    pub key: ApiKey,
    /// The secret to hand to the caller, once.
    pub token: Token,
}

/// Caps an echoed input at [`ECHO_LEN`] characters.
pub(crate) fn echo(input: &str) -> String {
    let mut out: String = input.chars().take(ECHO_LEN).collect();
    if input.chars().nth(ECHO_LEN).is_some() {
        out.push('…');
    }
    out
}

/// The message for a permission pattern the catalog refused.
pub(super) fn pattern_message(error: &CatalogError) -> String {
    match error {
        CatalogError::UnknownPermission(p) => format!("Unknown permission: {}", echo(p)),
        CatalogError::NoMatch(p) => format!("Permission pattern {} matches no permission", echo(p)),
        CatalogError::InvalidPattern(p) => format!("Invalid permission pattern: {}", echo(p)),
        other => echo(&other.to_string()),
    }
}

/// Checks a text field that is stored trimmed: not blank, at most `max` characters.
pub(super) fn check_text(errors: &mut ValidationErrors, field: &str, value: &str, max: usize) {
    let value = value.trim();
    if value.is_empty() {
        errors.push(format!("{field} can't be blank"));
    } else if value.chars().count() > max {
        errors.push(format!("{field} is too long (maximum is {max} characters)"));
    }
}

/// A request that passed validation: what it asks for, resolved against the catalog.
/// Explicitly requested permissions: exact names, and patterns (each with its catalog expansion),
/// which grant only what the issuer holds of them.
pub(super) struct Requested<'s> {
    pub(super) exact: PermissionSet,
    pub(super) patterns: Vec<(&'s str, PermissionSet)>,
}

pub(super) struct Request<'c> {
    /// The explicit permissions.
    pub(super) permissions: Option<Requested<'c>>,
    pub(super) role: Option<&'c Role>,
    pub(super) expires_at: Option<Timestamp>,
    /// Parsed ranges, when the request names some.
    pub(super) allowed_addresses: Option<Vec<AddressRange>>,
}

/// The 422 message for more than [`MAX_ADDRESS_RANGES`] ranges.
pub(super) fn too_many_ranges_message() -> String {
    format!("Too many allowed addresses (maximum is {MAX_ADDRESS_RANGES})")
}

/// Every malformed part of `spec`, or what it resolves to.
pub(super) fn validate<'c>(
    catalog: &'c Catalog,
    spec: &'c KeySpec,
    created_by: Option<&str>,
    now: Timestamp,
) -> Result<Request<'c>, ValidationErrors> {
    let mut errors = ValidationErrors::default();
    check_text(&mut errors, "Name", &spec.name, MAX_KEY_NAME_LEN);
    for problem in &spec.malformed {
        errors.push(problem.clone());
    }
    // The voice-agent platform's `user_id` (at least one character): from the issuer, but
    // still held to the rule, so no key records a blank creator.
    if let Some(created_by) = created_by {
        check_text(&mut errors, "Created by", created_by, MAX_CREATED_BY_LEN);
    }

    if spec.expires_at.is_some() && spec.ttl.is_some() {
        errors.push("Specify an expiration date or a time to live, not both");
    }
    if spec.expires_at.is_some_and(|e| e <= now) {
        errors.push("Expiration date must be in the future");
    }
    if spec.expires_at.is_some_and(|e| !e.is_recordable()) {
        errors.push("Expiration date must be no later than 9999-12-31T23:59:59Z");
    }
    // A positive time to live rounds up to the clock's microsecond, so it never gives a key that
    // is dead at birth; one that ends past what a record can store is refused, never clamped.
    let ttl_expiry = spec.ttl.map(|ttl| now.saturating_add_ceil(ttl));
    if spec.ttl.is_some_and(|t| t.is_zero()) {
        errors.push("Time to live must be greater than 0 seconds");
    } else if ttl_expiry.is_some_and(|e| !e.is_recordable()) {
        errors.push("Time to live is too long: the key would expire after 9999-12-31T23:59:59Z");
    }

    let mut exact = PermissionSet::EMPTY;
    let mut patterns = Vec::new();
    if spec.permissions.as_ref().is_some_and(Vec::is_empty) {
        errors.push("Permissions can't be empty");
    }
    for pattern in spec.permissions.iter().flatten() {
        match catalog.expand([pattern]) {
            Ok(set) if pattern.contains('*') => patterns.push((pattern.as_str(), set)),
            Ok(set) => exact = exact.union(&set),
            Err(e) => errors.push(pattern_message(&e)),
        }
    }
    let permissions = patterns.iter().fold(exact, |all, (_, set)| all.union(set));
    let role = match &spec.role {
        None => None,
        Some(name) => {
            let found = catalog.role(name);
            if found.is_none() {
                errors.push(format!("Unknown role: {}", echo(name)));
            }
            found
        }
    };
    if let Some(role) = role
        && spec.permissions.is_some()
        && !permissions.is_subset(role.permissions())
    {
        errors.push(format!(
            "Permissions must lie within the role {}",
            role.name()
        ));
    }

    if spec.tags.len() > MAX_TAGS {
        errors.push(format!("Too many tags (maximum is {MAX_TAGS})"));
    }
    for tag in &spec.tags {
        check_text(&mut errors, "Tag", tag, MAX_TAG_LEN);
    }
    if let Some(comment) = &spec.comment
        && comment.chars().count() > MAX_COMMENT_LEN
    {
        errors.push(format!(
            "Comment is too long (maximum is {MAX_COMMENT_LEN} characters)"
        ));
    }
    let mut allowed_addresses = Vec::new();
    if let Some(ranges) = &spec.allowed_addresses {
        if ranges.is_empty() {
            // Ambiguous (anywhere, or nowhere?): say what is meant by leaving the field out.
            errors.push("Allowed addresses can't be empty");
        }
        if ranges.len() > MAX_ADDRESS_RANGES {
            errors.push(too_many_ranges_message());
        }
        for text in ranges {
            match text.trim().parse::<AddressRange>() {
                Ok(range) => allowed_addresses.push(range),
                Err(_) => errors.push(format!(
                    "Invalid address range: {} (expected CIDR, such as 10.0.0.0/8)",
                    echo(text)
                )),
            }
        }
    }
    match crate::limits::NamedLimit::check_set(&spec.limits) {
        Ok(()) => {}
        Err(crate::limits::LimitError::TooMany) => errors.push(format!(
            "Too many limits (maximum is {})",
            crate::limits::MAX_NAMED_LIMITS
        )),
        Err(_) => errors.push("Limit names must be unique"),
    }
    errors.into_result()?;
    Ok(Request {
        permissions: spec
            .permissions
            .is_some()
            .then_some(Requested { exact, patterns }),
        role,
        expires_at: spec.expires_at.or(ttl_expiry),
        allowed_addresses: spec
            .allowed_addresses
            .is_some()
            .then_some(allowed_addresses),
    })
}
