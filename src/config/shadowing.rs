//! Routes that can never match: the router takes the first route in file order whose listener,
//! host, path and method fit, so a route every request of which an earlier route already takes
//! is dead configuration (usually a more specific route written after a general one).

use http::Method;

use super::runtime::PathMatch;

/// What the router compares, for one route.
pub struct RouteKey<'a> {
    pub listener: &'a str,
    /// Lowercase; `None` takes any host.
    pub host: Option<&'a str>,
    pub path: &'a PathMatch,
    /// Empty: any method.
    pub methods: &'a [Method],
}

/// For each route that can never match, its index and the indices of the earlier routes that
/// take its requests.
pub fn shadowed(routes: &[RouteKey<'_>]) -> Vec<(usize, Vec<usize>)> {
    let mut out = Vec::new();
    for (i, later) in routes.iter().enumerate() {
        let covering: Vec<usize> = routes[..i]
            .iter()
            .enumerate()
            .filter(|(_, earlier)| {
                earlier.listener == later.listener
                    && host_covers(earlier.host, later.host)
                    && path_covers(earlier.path, later.path)
            })
            .map(|(j, _)| j)
            .collect();
        let any_method = |j: &usize| routes[*j].methods.is_empty();
        let takers: Vec<usize> = if let Some(j) = covering.iter().find(|j| any_method(j)) {
            vec![*j]
        } else if later.methods.is_empty() {
            // A route for any method is only dead behind a route for any method.
            Vec::new()
        } else {
            // Each of its methods is taken by some earlier route.
            let mut takers = Vec::new();
            for m in later.methods {
                match covering.iter().find(|j| routes[**j].methods.contains(m)) {
                    Some(j) => {
                        if !takers.contains(j) {
                            takers.push(*j);
                        }
                    }
                    None => {
                        takers.clear();
                        break;
                    }
                }
            }
            takers.sort_unstable();
            takers
        };
        if !takers.is_empty() {
            out.push((i, takers));
        }
    }
    out
}

fn host_covers(earlier: Option<&str>, later: Option<&str>) -> bool {
    match (earlier, later) {
        (None, _) => true,
        (Some(a), Some(b)) => a.eq_ignore_ascii_case(b),
        (Some(_), None) => false,
    }
}

fn path_covers(earlier: &PathMatch, later: &PathMatch) -> bool {
    match (earlier, later) {
        (PathMatch::Prefix(p), PathMatch::Prefix(q) | PathMatch::Exact(q)) => {
            q.starts_with(p.as_str())
        }
        (PathMatch::Exact(p), PathMatch::Exact(q)) => p == q,
        (PathMatch::Exact(_), PathMatch::Prefix(_)) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prefix(p: &str) -> PathMatch {
        PathMatch::Prefix(p.into())
    }

    fn exact(p: &str) -> PathMatch {
        PathMatch::Exact(p.into())
    }

    fn key<'a>(
        listener: &'a str,
        host: Option<&'a str>,
        path: &'a PathMatch,
        methods: &'a [Method],
    ) -> RouteKey<'a> {
        RouteKey {
            listener,
            host,
            path,
            methods,
        }
    }

    #[test]
    fn a_general_route_first_shadows_a_specific_one() {
        let (all, orders, exact_orders) = (prefix("/"), prefix("/orders/"), exact("/orders/1"));
        let routes = [
            key("e", None, &all, &[]),
            key("e", None, &orders, &[Method::GET]),
            key("e", Some("a.example"), &exact_orders, &[]),
        ];
        assert_eq!(shadowed(&routes), [(1, vec![0]), (2, vec![0])]);
    }

    #[test]
    fn different_listener_host_path_or_method_keeps_a_route_alive() {
        let (orders, shop, exact_orders) = (prefix("/orders/"), prefix("/shop/"), exact("/orders"));
        let get = [Method::GET];
        let post = [Method::POST];
        let routes = [
            key("e", Some("a.example"), &orders, &get),
            key("p", None, &orders, &get),
            key("e", None, &orders, &get),
            key("e", Some("b.example"), &orders, &get),
            key("e", None, &orders, &post),
            key("e", None, &shop, &get),
            key("e", None, &exact_orders, &get),
        ];
        // Route 3 (b.example, GET) is taken by route 2 (any host, GET).
        assert_eq!(shadowed(&routes), [(3, vec![2])]);
    }

    #[test]
    fn methods_split_over_earlier_routes_still_shadow() {
        let orders = prefix("/orders/");
        let routes = [
            key("e", None, &orders, &[Method::GET]),
            key("e", None, &orders, &[Method::POST]),
            key("e", None, &orders, &[Method::POST, Method::GET]),
            key("e", None, &orders, &[]),
        ];
        assert_eq!(shadowed(&routes), [(2, vec![0, 1])]);
    }

    #[test]
    fn an_exact_path_never_covers_a_prefix() {
        let (e, p) = (exact("/a/"), prefix("/a/"));
        assert!(shadowed(&[key("l", None, &e, &[]), key("l", None, &p, &[])]).is_empty());
        assert_eq!(
            shadowed(&[key("l", None, &p, &[]), key("l", None, &e, &[])]),
            [(1, vec![0])]
        );
    }
}
