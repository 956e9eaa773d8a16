//! Tier quotas and project validation (the AI-app platform's tiers).
//!
//! A [`Tier`] caps projects per account, end users per project and API keys per project. The
//! caller counts (keygate stores nothing) and asks before creating: `tier.check_new_key(count)`.
//!
//! | Tier | Max projects | End users per project | API keys per project |
//! |---|---|---|---|
//! | Free Starter | 5 | 100 | 3 |
//! | Cloud Starter | 20 | 10,000 | 10 |
//! | Cloud Premium | unlimited | unlimited | unlimited |

use serde::{Deserialize, Serialize};

use crate::issue::ValidationErrors;

/// The shortest project name accepted, in characters.
pub const MIN_PROJECT_NAME_LEN: usize = 3;
/// The longest project name accepted, in characters.
pub const MAX_PROJECT_NAME_LEN: usize = 100;
/// The longest project description accepted, in characters.
pub const MAX_PROJECT_DESCRIPTION_LEN: usize = 500;

/// A pricing tier (the AI-app platform's tiers).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Tier {
    /// 5 projects, 100 end users and 3 API keys per project.
    FreeStarter,
    /// 20 projects, 10,000 end users and 10 API keys per project.
    CloudStarter,
    /// No limits.
    CloudPremium,
}

/// A tier's caps; `None` is unlimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Limits {
    /// Projects per account.
    pub projects: Option<u32>,
    /// End users per project.
    pub end_users_per_project: Option<u32>,
    /// API keys per project.
    pub keys_per_project: Option<u32>,
}

/// A tier limit was reached. 403.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
#[non_exhaustive]
pub enum QuotaError {
    /// The account already has its tier's maximum of projects.
    #[error("Project limit reached")]
    ProjectLimit {
        /// The tier's cap.
        limit: u32,
    },
    /// The project already has its tier's maximum of API keys.
    #[error("API key limit reached")]
    KeyLimit {
        /// The tier's cap.
        limit: u32,
    },
    /// The project already has its tier's maximum of end users.
    #[error("End user limit reached")]
    EndUserLimit {
        /// The tier's cap.
        limit: u32,
    },
}

/// `Ok` while `current` is below `limit`.
fn below(limit: Option<u32>, current: u32, error: fn(u32) -> QuotaError) -> Result<(), QuotaError> {
    match limit {
        Some(limit) if current >= limit => Err(error(limit)),
        _ => Ok(()),
    }
}

impl Tier {
    /// The tier's caps.
    ///
    /// ```
    /// use keygate::Tier;
    /// let free = Tier::FreeStarter.limits();
    /// assert_eq!(free.projects, Some(5));
    /// assert_eq!(free.end_users_per_project, Some(100));
    /// assert_eq!(free.keys_per_project, Some(3));
    /// assert_eq!(Tier::CloudPremium.limits().projects, None);
    /// ```
    pub const fn limits(self) -> Limits {
        match self {
            Tier::FreeStarter => Limits {
                projects: Some(5),
                end_users_per_project: Some(100),
                keys_per_project: Some(3),
            },
            Tier::CloudStarter => Limits {
                projects: Some(20),
                end_users_per_project: Some(10_000),
                keys_per_project: Some(10),
            },
            Tier::CloudPremium => Limits {
                projects: None,
                end_users_per_project: None,
                keys_per_project: None,
            },
        }
    }

    /// May an account with `current_projects` projects create one more?
    ///
    /// ```
    /// use keygate::{Catalog, QuotaError, Refusal, Tier};
    /// assert!(Tier::FreeStarter.check_new_project(4).is_ok());
    /// let err = Tier::FreeStarter.check_new_project(5).unwrap_err();
    /// assert_eq!(err, QuotaError::ProjectLimit { limit: 5 });
    /// assert_eq!(err.status(), 403);
    /// let body = err.body(&Catalog::read_write_delete());
    /// assert_eq!(serde_json::to_string(&body)?, r#"{"error":"Project limit reached"}"#);
    /// # Ok::<(), serde_json::Error>(())
    /// ```
    pub fn check_new_project(self, current_projects: u32) -> Result<(), QuotaError> {
        below(self.limits().projects, current_projects, |limit| {
            QuotaError::ProjectLimit { limit }
        })
    }

    /// May a project with `current_keys` API keys get one more?
    pub fn check_new_key(self, current_keys: u32) -> Result<(), QuotaError> {
        below(self.limits().keys_per_project, current_keys, |limit| {
            QuotaError::KeyLimit { limit }
        })
    }

    /// May a project with `current_end_users` end users register one more?
    pub fn check_new_end_user(self, current_end_users: u32) -> Result<(), QuotaError> {
        below(
            self.limits().end_users_per_project,
            current_end_users,
            |limit| QuotaError::EndUserLimit { limit },
        )
    }
}

/// Checks a new project's name (3-100 characters, not blank) and optional description (at most
/// 500 characters), collecting every problem for a 422 body.
///
/// ```
/// use keygate::validate_project;
/// assert!(validate_project("Production API", Some("Image generation")).is_ok());
/// let errors = validate_project("", Some(&"x".repeat(501))).unwrap_err();
/// assert_eq!(
///     serde_json::to_string(&errors)?,
///     r#"{"errors":["Name can't be blank","Description is too long (maximum is 500 characters)"]}"#
/// );
/// # Ok::<(), serde_json::Error>(())
/// ```
pub fn validate_project(name: &str, description: Option<&str>) -> Result<(), ValidationErrors> {
    let mut errors = ValidationErrors::default();
    let name_len = name.trim().chars().count();
    if name_len == 0 {
        errors.push("Name can't be blank");
    } else if name_len < MIN_PROJECT_NAME_LEN {
        errors.push(format!(
            "Name is too short (minimum is {MIN_PROJECT_NAME_LEN} characters)"
        ));
    } else if name_len > MAX_PROJECT_NAME_LEN {
        errors.push(format!(
            "Name is too long (maximum is {MAX_PROJECT_NAME_LEN} characters)"
        ));
    }
    if description.is_some_and(|d| d.chars().count() > MAX_PROJECT_DESCRIPTION_LEN) {
        errors.push(format!(
            "Description is too long (maximum is {MAX_PROJECT_DESCRIPTION_LEN} characters)"
        ));
    }
    errors.into_result()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_are_exclusive_upper_bounds() {
        assert!(Tier::FreeStarter.check_new_key(2).is_ok());
        assert_eq!(
            Tier::FreeStarter.check_new_key(3),
            Err(QuotaError::KeyLimit { limit: 3 })
        );
        assert!(Tier::CloudStarter.check_new_end_user(9_999).is_ok());
        assert_eq!(
            Tier::CloudStarter.check_new_end_user(10_000),
            Err(QuotaError::EndUserLimit { limit: 10_000 })
        );
        assert!(Tier::CloudPremium.check_new_project(u32::MAX).is_ok());
    }

    #[test]
    fn project_names_are_measured_in_characters_after_trimming() {
        assert!(validate_project("ééé", None).is_ok());
        assert!(validate_project("  ab  ", None).is_err());
        assert!(validate_project(&"é".repeat(100), None).is_ok());
        assert!(validate_project(&"é".repeat(101), None).is_err());
        assert!(validate_project("abc", Some(&"é".repeat(500))).is_ok());
    }
}
