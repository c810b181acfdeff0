//! Forwarding headers on a proxied request: what the upstream is told about the client.
//!
//! A client can write `X-Forwarded-For: 10.0.0.1` or `X-Real-IP` itself, and an upstream that
//! believes it grants whatever that address is trusted for. So headers that describe an earlier
//! hop are kept only when the peer is one of `trusted_proxies` (which then vouches for them);
//! from any other peer they are removed. Then the gateway adds its own hop from what it saw on
//! the socket: the peer address, `http`/`https` by the listener, and the `Host` it routed by.
//!
//! Call [`apply`] on the upstream request after the hop-by-hop fields are gone.

use std::net::IpAddr;

use http::{HeaderName, HeaderValue};
use pingora::http::RequestHeader;

/// How the gateway writes its own hop.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ForwardedStyle {
    /// `X-Forwarded-For` (appended), `X-Forwarded-Proto` and `X-Forwarded-Host`.
    #[default]
    XForwarded,
    /// One RFC 7239 `Forwarded` element (`for=...;proto=...;host=...`), appended.
    Forwarded,
}

impl ForwardedStyle {
    /// The YAML spelling (`x-forwarded`, `forwarded`).
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "x-forwarded" => Some(Self::XForwarded),
            "forwarded" => Some(Self::Forwarded),
            _ => None,
        }
    }
}

/// Exact names of headers that describe an earlier hop (any `x-forwarded-*` too).
const CLIENT_HOP_HEADERS: [&str; 5] = [
    "forwarded",
    "x-real-ip",
    "true-client-ip",
    "x-client-ip",
    "cf-connecting-ip",
];

const X_FORWARDED_PREFIX: &str = "x-forwarded-";

/// Whether `name` (lowercase) describes an earlier hop: only a trusted proxy may send it.
pub fn is_hop_header(name: &str) -> bool {
    name.starts_with(X_FORWARDED_PREFIX) || CLIENT_HOP_HEADERS.contains(&name)
}

/// What the gateway saw of the connection the request arrived on.
#[derive(Debug, Clone, Copy)]
pub struct Hop<'a> {
    /// The socket peer (`None` on a non-IP socket).
    pub peer: Option<IpAddr>,
    /// Whether the listener speaks TLS.
    pub tls: bool,
    /// The `Host` (or `:authority`) the request was routed by.
    pub host: Option<&'a str>,
}

impl Hop<'_> {
    fn proto(&self) -> &'static str {
        if self.tls { "https" } else { "http" }
    }
}

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");

/// Removes hop headers unless `trusted`, then adds the gateway's hop in `style`.
pub fn apply(
    req: &mut RequestHeader,
    style: ForwardedStyle,
    trusted: bool,
    hop: &Hop<'_>,
) -> pingora::Result<()> {
    // From an untrusted peer there is no earlier hop left after stripping: nothing to read.
    if !trusted {
        strip_hop_headers(req);
    }
    let peer = hop.peer.map(|ip| ip.to_canonical());
    match style {
        ForwardedStyle::XForwarded => {
            if let Some(peer) = peer {
                let value = match trusted.then(|| joined(req, &X_FORWARDED_FOR)).flatten() {
                    Some(chain) => header_value(append(Some(chain), &peer.to_string()))?,
                    None => peer_value(peer)?,
                };
                req.insert_header_name(&X_FORWARDED_FOR, value)?;
            }
            // A trusted proxy saw the client's scheme and host first; its values stand.
            if !(trusted && req.headers.contains_key(X_FORWARDED_PROTO)) {
                req.insert_header_name(&X_FORWARDED_PROTO, HeaderValue::from_static(hop.proto()))?;
            }
            if let Some(host) = hop.host
                && !(trusted && req.headers.contains_key(X_FORWARDED_HOST))
            {
                req.insert_header_name(&X_FORWARDED_HOST, header_value(host.to_owned())?)?;
            }
        }
        ForwardedStyle::Forwarded => {
            let element = forwarded_element(peer, hop);
            let chain = append(
                trusted
                    .then(|| joined(req, &http::header::FORWARDED))
                    .flatten(),
                &element,
            );
            req.insert_header_name(&http::header::FORWARDED, header_value(chain)?)?;
        }
    }
    Ok(())
}

/// The peer's address as a header value. A connection's requests, and a client's connections,
/// come from the same address, so each thread keeps the last one it wrote (the value shares
/// its bytes: a clone is a count, not a copy).
fn peer_value(peer: IpAddr) -> pingora::Result<HeaderValue> {
    thread_local! {
        static LAST: std::cell::RefCell<Option<(IpAddr, HeaderValue)>> =
            const { std::cell::RefCell::new(None) };
    }
    LAST.with_borrow_mut(|last| {
        if let Some((ip, value)) = last.as_ref()
            && *ip == peer
        {
            return Ok(value.clone());
        }
        let value = header_value(peer.to_string())?;
        *last = Some((peer, value.clone()));
        Ok(value)
    })
}

/// `text` as a header value, refused as Pingora refuses an invalid value it is given.
fn header_value(text: String) -> pingora::Result<HeaderValue> {
    use pingora::OrErr;
    HeaderValue::try_from(text).or_err(
        pingora::ErrorType::InvalidHTTPHeader,
        "invalid value while insert",
    )
}

/// Removes every header a client could use to pose as an earlier hop.
fn strip_hop_headers(req: &mut RequestHeader) {
    // Collect first: the map cannot change while it is read. Almost always empty.
    let names: Vec<HeaderName> = req
        .headers
        .keys()
        .filter(|n| is_hop_header(n.as_str()))
        .cloned()
        .collect();
    for name in names {
        req.remove_header(&name);
    }
}

/// Every line of `name`, joined with `, ` (a list header may arrive on several lines).
fn joined(req: &RequestHeader, name: &HeaderName) -> Option<String> {
    let mut out: Option<String> = None;
    for value in req.headers.get_all(name) {
        let text = String::from_utf8_lossy(value.as_bytes());
        let text = text.trim();
        if text.is_empty() {
            continue;
        }
        match &mut out {
            Some(s) => {
                s.push_str(", ");
                s.push_str(text);
            }
            None => out = Some(text.to_owned()),
        }
    }
    out
}

fn append(chain: Option<String>, entry: &str) -> String {
    match chain {
        Some(mut c) => {
            c.push_str(", ");
            c.push_str(entry);
            c
        }
        None => entry.to_owned(),
    }
}

/// `for=...;proto=...;host=...` (RFC 7239 §4): IPv6 nodes and hosts with a port are quoted.
fn forwarded_element(peer: Option<IpAddr>, hop: &Hop<'_>) -> String {
    let node = match peer {
        Some(IpAddr::V6(v6)) => format!("\"[{v6}]\""),
        Some(IpAddr::V4(v4)) => v4.to_string(),
        None => "unknown".to_owned(),
    };
    let mut element = format!("for={node};proto={}", hop.proto());
    if let Some(host) = hop.host {
        element.push_str(";host=");
        element.push_str(&token_or_quoted(host));
    }
    element
}

fn token_or_quoted(value: &str) -> String {
    if !value.is_empty() && value.bytes().all(super::framing::is_tchar) {
        return value.to_owned();
    }
    let mut out = String::with_capacity(value.len() + 2);
    out.push('"');
    for c in value.chars() {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(headers: &[(&str, &str)]) -> RequestHeader {
        let mut r = RequestHeader::build("GET", b"/x", None).unwrap();
        for (n, v) in headers {
            r.append_header(n.to_string(), *v).unwrap();
        }
        r
    }

    fn values(r: &RequestHeader, name: &str) -> Vec<String> {
        r.headers
            .get_all(name)
            .iter()
            .map(|v| v.to_str().unwrap().to_owned())
            .collect()
    }

    const SPOOFED: [(&str, &str); 9] = [
        ("X-Forwarded-For", "10.0.0.1"),
        ("X-Forwarded-Proto", "https"),
        ("X-Forwarded-Host", "admin.internal"),
        ("X-Forwarded-Port", "443"),
        ("X-Real-IP", "10.0.0.2"),
        ("Forwarded", "for=10.0.0.3"),
        ("True-Client-IP", "10.0.0.4"),
        ("X-Client-IP", "10.0.0.5"),
        ("CF-Connecting-IP", "10.0.0.6"),
    ];

    fn hop(peer: &str, tls: bool) -> Hop<'static> {
        Hop {
            peer: Some(peer.parse().unwrap()),
            tls,
            host: Some("gw.example:8443"),
        }
    }

    #[test]
    fn untrusted_peer_cannot_name_an_earlier_hop() {
        let mut r = request(&SPOOFED);
        r.append_header("x-other", "kept").unwrap();
        apply(
            &mut r,
            ForwardedStyle::XForwarded,
            false,
            &hop("203.0.113.9", true),
        )
        .unwrap();
        assert_eq!(values(&r, "x-forwarded-for"), ["203.0.113.9"]);
        assert_eq!(values(&r, "x-forwarded-proto"), ["https"]);
        assert_eq!(values(&r, "x-forwarded-host"), ["gw.example:8443"]);
        for gone in [
            "x-forwarded-port",
            "x-real-ip",
            "forwarded",
            "true-client-ip",
            "x-client-ip",
            "cf-connecting-ip",
        ] {
            assert!(r.headers.get(gone).is_none(), "{gone} kept");
        }
        assert_eq!(values(&r, "x-other"), ["kept"]);
    }

    #[test]
    fn each_request_names_its_own_peer_whatever_came_before_on_the_thread() {
        for peer in [
            "203.0.113.9",
            "203.0.113.9",
            "198.51.100.7",
            "2001:db8::1",
            "203.0.113.9",
        ] {
            let mut r = request(&[]);
            apply(&mut r, ForwardedStyle::XForwarded, false, &hop(peer, true)).unwrap();
            assert_eq!(values(&r, "x-forwarded-for"), [peer]);
        }
    }

    #[test]
    fn trusted_proxy_chain_is_kept_and_extended() {
        let mut r = request(&[
            ("X-Forwarded-For", "198.51.100.4, 10.0.0.9"),
            ("X-Forwarded-For", "10.0.0.8"),
            ("X-Forwarded-Proto", "https"),
            ("X-Real-IP", "198.51.100.4"),
        ]);
        apply(
            &mut r,
            ForwardedStyle::XForwarded,
            true,
            &hop("::ffff:10.1.2.3", false),
        )
        .unwrap();
        assert_eq!(
            values(&r, "x-forwarded-for"),
            ["198.51.100.4, 10.0.0.9, 10.0.0.8, 10.1.2.3"]
        );
        // The proxy saw the client's scheme; the gateway's plaintext hop does not overwrite it.
        assert_eq!(values(&r, "x-forwarded-proto"), ["https"]);
        assert_eq!(values(&r, "x-forwarded-host"), ["gw.example:8443"]);
        assert_eq!(values(&r, "x-real-ip"), ["198.51.100.4"]);
    }

    #[test]
    fn forwarded_style_writes_one_rfc7239_element() {
        let mut r = request(&SPOOFED);
        apply(
            &mut r,
            ForwardedStyle::Forwarded,
            false,
            &hop("2001:db8::7", true),
        )
        .unwrap();
        assert_eq!(
            values(&r, "forwarded"),
            [r#"for="[2001:db8::7]";proto=https;host="gw.example:8443""#]
        );
        assert!(r.headers.get("x-forwarded-for").is_none());

        let mut r = request(&[("Forwarded", "for=198.51.100.4;proto=https")]);
        let hop = Hop {
            peer: Some("10.1.2.3".parse().unwrap()),
            tls: false,
            host: Some("gw"),
        };
        apply(&mut r, ForwardedStyle::Forwarded, true, &hop).unwrap();
        assert_eq!(
            values(&r, "forwarded"),
            ["for=198.51.100.4;proto=https, for=10.1.2.3;proto=http;host=gw"]
        );
    }

    #[test]
    fn quoting_escapes_quotes_and_backslashes() {
        assert_eq!(token_or_quoted("gw"), "gw");
        assert_eq!(token_or_quoted(r#"a"b\c"#), r#""a\"b\\c""#);
        assert!(is_hop_header("x-forwarded-prefix"));
        assert!(!is_hop_header("x-forwardedfor"));
    }
}
