//! `keygate audit`: every stored key checked against its ancestors and its creator's cap.

use std::collections::{BTreeSet, HashMap};

use keygate::{ApiKeyRecord, Catalog, KeyId, Timestamp};

/// One key that exceeds an ancestor or its creator's cap, and every way it does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// The key.
    pub key: KeyId,
    /// Its name.
    pub name: String,
    /// Each excess, as a sentence.
    pub reasons: Vec<String>,
}

/// Checks every record against the records up its `issued_by` chain (permissions, account,
/// scope, expiry, rate limit, role ceiling when `catalog` ranks roles) and against `caps`
/// (creator → the permission names they hold now). Findings come sorted by key id.
pub fn audit(
    records: &[ApiKeyRecord],
    catalog: Option<&Catalog>,
    caps: &HashMap<String, BTreeSet<String>>,
) -> Vec<Finding> {
    let by_id: HashMap<KeyId, &ApiKeyRecord> = records.iter().map(|r| (r.id, r)).collect();
    let mut findings = Vec::new();
    for record in records {
        let mut reasons = Vec::new();
        let mut seen = BTreeSet::new();
        let mut next = record.issued_by;
        while let Some(parent_id) = next {
            if !seen.insert(parent_id) {
                reasons.push(format!("its issuer chain loops at key {parent_id}"));
                break;
            }
            let Some(parent) = by_id.get(&parent_id) else {
                break;
            };
            reasons.extend(exceeds(record, parent, catalog));
            next = parent.issued_by;
        }
        if let Some(cap) = record.created_by.as_ref().and_then(|c| caps.get(c)) {
            let beyond: Vec<&str> = record
                .permissions
                .iter()
                .filter(|p| !cap.contains(*p))
                .map(String::as_str)
                .collect();
            if !beyond.is_empty() {
                reasons.push(format!(
                    "holds {} beyond its creator's current permissions (keygate caps them at \
                     request time; the record still holds them)",
                    beyond.join(", ")
                ));
            }
        }
        if !reasons.is_empty() {
            findings.push(Finding {
                key: record.id,
                name: record.name.clone(),
                reasons,
            });
        }
    }
    findings.sort_by_key(|f| f.key);
    findings
}

/// Every way `child` reaches beyond `ancestor`.
fn exceeds(
    child: &ApiKeyRecord,
    ancestor: &ApiKeyRecord,
    catalog: Option<&Catalog>,
) -> Vec<String> {
    let mut reasons = Vec::new();
    let held: BTreeSet<&str> = ancestor.permissions.iter().map(String::as_str).collect();
    let beyond: Vec<&str> = child
        .permissions
        .iter()
        .map(String::as_str)
        .filter(|p| !held.contains(p))
        .collect();
    let who = format!("ancestor {} ({})", ancestor.id, ancestor.name);
    if !beyond.is_empty() {
        reasons.push(format!("holds {} that {who} does not", beyond.join(", ")));
    }
    if child.account_id != ancestor.account_id {
        reasons.push(format!("belongs to another account than {who}"));
    }
    if ancestor.project_id.is_some() && child.project_id != ancestor.project_id {
        reasons.push(format!("reaches beyond the project of {who}"));
    }
    if let Some(limit) = ancestor.expires_at
        && child.expires_at.is_none_or(|e: Timestamp| e > limit)
    {
        reasons.push(format!("outlives {who} (which expires at {limit})"));
    }
    if let Some(limit) = ancestor.rate_limit
        && child.rate_limit.is_none_or(|r| !r.is_within(&limit))
    {
        reasons.push(format!("has a looser rate limit than {who}"));
    }
    let ceiling = |r: &ApiKeyRecord| r.role.clone().or_else(|| r.role_ceiling.clone());
    if let (Some(catalog), Some(mine), Some(theirs)) = (catalog, ceiling(child), ceiling(ancestor))
    {
        let rank = |name: &str| catalog.role(name).map(keygate::Role::rank);
        match (rank(&mine), rank(&theirs)) {
            (Some(a), Some(b)) if a > b => {
                reasons.push(format!("has role {mine}, ranked above {who}'s {theirs}"));
            }
            (None, _) | (_, None) => {
                reasons.push(format!(
                    "has a role the catalog does not rank ({mine} or {theirs})"
                ));
            }
            _ => {}
        }
    }
    reasons
}
