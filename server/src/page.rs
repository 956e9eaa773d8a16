//! Pagination of every list: `?limit=N` (default [`DEFAULT_LIMIT`], at most [`MAX_LIMIT`]) and
//! an opaque `?cursor=` taken from the previous page's `next_cursor`. Items come in id order;
//! a cursor names the last id served, so pages stay stable while items are added or removed.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use keygate::axum::ApiError;

use crate::reply::invalid;

/// Items per page when `limit` is not given.
pub const DEFAULT_LIMIT: usize = 50;
/// The largest `limit` accepted.
pub const MAX_LIMIT: usize = 200;
/// A cursor longer than this is not one of ours.
const MAX_CURSOR_LEN: usize = 128;

/// Which list a cursor belongs to: a cursor from one list is refused by another.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum List {
    Projects,
    Recordings,
    ApiKeys,
}

impl List {
    fn tag(self) -> &'static str {
        match self {
            List::Projects => "projects",
            List::Recordings => "recordings",
            List::ApiKeys => "api_keys",
        }
    }
}

/// A validated page request: how many items, and after which id (as text).
#[derive(Debug)]
pub(crate) struct PageRequest {
    pub(crate) limit: usize,
    pub(crate) after: Option<String>,
}

impl PageRequest {
    /// Validates `limit` and decodes `cursor` for `list`: 422 in the API's shape otherwise.
    pub(crate) fn new(
        list: List,
        limit: Option<i64>,
        cursor: Option<&str>,
    ) -> Result<Self, ApiError> {
        let limit = match limit {
            None => DEFAULT_LIMIT,
            Some(n) => usize::try_from(n)
                .ok()
                .filter(|n| (1..=MAX_LIMIT).contains(n))
                .ok_or_else(|| invalid(format!("Limit must be between 1 and {MAX_LIMIT}")))?,
        };
        let after = cursor.map(|c| decode(list, c)).transpose()?;
        Ok(Self { limit, after })
    }

    /// The id after which to start, parsed as the list's id type (a cursor that decodes but
    /// does not hold one is invalid).
    pub(crate) fn after<T: std::str::FromStr>(&self) -> Result<Option<T>, ApiError> {
        self.after
            .as_deref()
            .map(|id| id.parse().map_err(|_| bad_cursor()))
            .transpose()
    }
}

/// The cursor for the page after one ending at `last_id`.
pub(crate) fn cursor(list: List, last_id: &impl std::fmt::Display) -> String {
    URL_SAFE_NO_PAD.encode(format!("{}:{last_id}", list.tag()))
}

/// `next_cursor` for a page: the last item's id when more items follow.
pub(crate) fn next_cursor<T, I: std::fmt::Display>(
    list: List,
    items: &[T],
    more: bool,
    id: impl Fn(&T) -> I,
) -> Option<String> {
    items
        .last()
        .filter(|_| more)
        .map(|last| cursor(list, &id(last)))
}

fn bad_cursor() -> ApiError {
    invalid("Cursor is invalid")
}

fn decode(list: List, text: &str) -> Result<String, ApiError> {
    if text.len() > MAX_CURSOR_LEN {
        return Err(bad_cursor());
    }
    let bytes = URL_SAFE_NO_PAD.decode(text).map_err(|_| bad_cursor())?;
    let text = String::from_utf8(bytes).map_err(|_| bad_cursor())?;
    match text.split_once(':') {
        Some((tag, id)) if tag == list.tag() && !id.is_empty() => Ok(id.to_owned()),
        _ => Err(bad_cursor()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_belong_to_one_list() {
        let c = cursor(List::Projects, &42);
        let page = PageRequest::new(List::Projects, Some(10), Some(&c)).unwrap();
        assert_eq!((page.limit, page.after::<u64>().unwrap()), (10, Some(42)));
        assert!(PageRequest::new(List::Recordings, None, Some(&c)).is_err());
        for bad in ["", "!!", "cHJvamVjdHM", &"A".repeat(200)] {
            assert!(
                PageRequest::new(List::Projects, None, Some(bad)).is_err(),
                "{bad}"
            );
        }
        let not_a_number = cursor(List::Projects, &"x");
        let page = PageRequest::new(List::Projects, None, Some(&not_a_number)).unwrap();
        assert!(page.after::<u64>().is_err());
    }

    #[test]
    fn limits() {
        let limit = |n| PageRequest::new(List::ApiKeys, n, None).map(|p| p.limit);
        assert_eq!(limit(None).unwrap(), DEFAULT_LIMIT);
        assert_eq!(limit(Some(1)).unwrap(), 1);
        assert_eq!(limit(Some(200)).unwrap(), 200);
        for bad in [0, -1, 201, i64::MAX] {
            assert!(limit(Some(bad)).is_err(), "{bad}");
        }
    }
}
