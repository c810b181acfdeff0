//! TikTok-style pagination: `page_size` (1-100) and an opaque `page_token` in,
//! `next_page_token` out ("" on the last page). Tokens are standard base64, so they hold
//! `+`, `/` and `=` just as TikTok's do: a client that mangles them gets refused.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::Value;

use super::check::Params;
use super::reply::Reply;

/// Leading bytes chosen so that every token starts `+/+/` and ends with `=`.
const MAGIC: [u8; 3] = [0xFB, 0xFF, 0xBF];

/// One endpoint's token cannot be replayed on another: each list has its own tag.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum List {
    Orders = 1,
    Packages = 2,
    Products = 3,
    Returns = 4,
    Cancellations = 5,
    Statements = 6,
    Payments = 7,
}

pub(crate) fn encode_token(list: List, offset: usize) -> String {
    let offset = u32::try_from(offset).unwrap_or(u32::MAX).to_be_bytes();
    let mut raw = [0u8; 8];
    raw[..3].copy_from_slice(&MAGIC);
    raw[3] = list as u8;
    raw[4..].copy_from_slice(&offset);
    STANDARD.encode(raw)
}

pub(crate) fn decode_token(list: List, token: &str) -> Option<usize> {
    let raw = STANDARD.decode(token).ok()?;
    if raw.len() != 8 || raw[..3] != MAGIC || raw[3] != list as u8 {
        return None;
    }
    let offset = u32::from_be_bytes([raw[4], raw[5], raw[6], raw[7]]);
    usize::try_from(offset).ok()
}

/// Where a page starts and how long it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Page {
    pub size: usize,
    pub offset: usize,
}

/// Reads `page_size` (required by TikTok on list APIs) and `page_token` from the query.
pub(crate) fn page(params: &Params, list: List) -> Result<Page, Reply> {
    let size = params
        .get("page_size")
        .ok_or_else(|| Reply::invalid("page_size is required"))?
        .parse::<usize>()
        .ok()
        .filter(|n| (1..=100).contains(n))
        .ok_or_else(|| Reply::invalid("page_size must be between 1 and 100"))?;
    let offset = match params.get("page_token") {
        None | Some("") => 0,
        Some(token) => {
            decode_token(list, token).ok_or_else(|| Reply::invalid("page_token is invalid"))?
        }
    };
    Ok(Page { size, offset })
}

/// The page's items and the token for the next page ("" when this is the last).
pub(crate) fn paginate(items: &[Value], list: List, page: Page) -> (Vec<Value>, String) {
    let start = page.offset.min(items.len());
    let end = start.saturating_add(page.size).min(items.len());
    let next = if end < items.len() {
        encode_token(list, end)
    } else {
        String::new()
    };
    (items[start..end].to_vec(), next)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn tokens_hold_plus_slash_and_equals_and_round_trip() {
        for offset in [0, 1, 20, 99, 4096] {
            let t = encode_token(List::Orders, offset);
            assert!(t.starts_with("+/+/"), "{t}");
            assert!(t.ends_with('='), "{t}");
            assert_eq!(decode_token(List::Orders, &t), Some(offset));
            assert_eq!(decode_token(List::Products, &t), None, "bound to its list");
        }
        assert_eq!(decode_token(List::Orders, "not base64!"), None);
        let spaced = encode_token(List::Orders, 20).replace('+', " ");
        assert_eq!(
            decode_token(List::Orders, &spaced),
            None,
            "a `+` read as space is refused"
        );
    }

    #[test]
    fn pages_walk_the_whole_list() {
        let items: Vec<Value> = (0..45).map(|i| json!(i)).collect();
        let mut seen = Vec::new();
        let mut offset = 0;
        loop {
            let (page_items, next) = paginate(&items, List::Orders, Page { size: 20, offset });
            seen.extend(page_items);
            if next.is_empty() {
                break;
            }
            offset = decode_token(List::Orders, &next).unwrap();
        }
        assert_eq!(seen, items);
    }

    #[test]
    fn page_size_is_required_and_bounded() {
        let p = |q: &str| Params::parse_for_test(q);
        assert!(page(&p(""), List::Orders).is_err());
        assert!(page(&p("page_size=0"), List::Orders).is_err());
        assert!(page(&p("page_size=101"), List::Orders).is_err());
        assert!(page(&p("page_size=ten"), List::Orders).is_err());
        assert_eq!(
            page(&p("page_size=100"), List::Orders).unwrap(),
            Page {
                size: 100,
                offset: 0
            }
        );
        assert!(page(&p("page_size=10&page_token=bogus"), List::Orders).is_err());
    }
}
