//! Request-target limits: total length (414) and number of query parameters (400).

use http::Uri;

use super::error::InspectError;

/// Length of the request target as sent: the path and query, plus scheme and authority for
/// absolute-form targets.
pub fn request_target_len(uri: &Uri) -> usize {
    let path_and_query = uri.path_and_query().map_or(0, |pq| pq.as_str().len());
    let authority = uri.authority().map_or(0, |a| a.as_str().len());
    let scheme = uri.scheme_str().map_or(0, |s| s.len() + "://".len());
    scheme + authority + path_and_query
}

/// Number of `&`-separated, non-empty query parameters.
pub fn query_param_count(query: &str) -> usize {
    query.split('&').filter(|p| !p.is_empty()).count()
}

/// Refuse a target longer than `max_uri_bytes` or with more than `max_query_params` parameters.
pub fn check_uri_limits(
    uri: &Uri,
    max_uri_bytes: usize,
    max_query_params: usize,
) -> Result<(), InspectError> {
    if request_target_len(uri) > max_uri_bytes {
        return Err(InspectError::UriTooLong);
    }
    if let Some(q) = uri.query() {
        // cheap upper bound first: at most one parameter per `&` plus one
        let upper = q.bytes().filter(|&b| b == b'&').count() + 1;
        if upper > max_query_params && query_param_count(q) > max_query_params {
            return Err(InspectError::TooManyQueryParams);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn uri(s: &str) -> Uri {
        s.parse().expect("test uri")
    }

    #[test]
    fn target_length_limit_is_inclusive() {
        let path = format!("/{}", "a".repeat(99)); // 100 bytes
        assert_eq!(check_uri_limits(&uri(&path), 100, 10), Ok(()));
        assert_eq!(
            check_uri_limits(&uri(&path), 99, 10),
            Err(InspectError::UriTooLong)
        );
        let with_query = format!("{path}?x=1"); // 104 bytes
        assert_eq!(
            check_uri_limits(&uri(&with_query), 103, 10),
            Err(InspectError::UriTooLong)
        );
    }

    #[test]
    fn absolute_form_counts_scheme_and_authority() {
        let u = uri("http://example.com/abc");
        assert_eq!(request_target_len(&u), "http://example.com/abc".len());
        assert_eq!(check_uri_limits(&u, 21, 10), Err(InspectError::UriTooLong));
        assert_eq!(check_uri_limits(&u, 22, 10), Ok(()));
    }

    #[test]
    fn query_param_limit_is_inclusive() {
        let q3 = uri("/a?x=1&y=2&z=3");
        assert_eq!(check_uri_limits(&q3, 1000, 3), Ok(()));
        assert_eq!(
            check_uri_limits(&q3, 1000, 2),
            Err(InspectError::TooManyQueryParams)
        );
        // empty pieces are not parameters
        assert_eq!(check_uri_limits(&uri("/a?x=1&&&y=2&"), 1000, 2), Ok(()));
        assert_eq!(query_param_count(""), 0);
        assert_eq!(query_param_count("a"), 1);
    }
}
