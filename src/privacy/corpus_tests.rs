//! End-to-end privacy test: a generated corpus of realistic personal data goes through every log
//! path (free text, headers, query strings, JSON bodies, webhooks, errors, the tracing writer at
//! debug level, panics) and through response masking; not one seeded value may come out, not
//! even as a substring.

use std::fmt;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::engine::test_support::engine;
use super::tracing_layer::{CapturedLogs, LogFormat, LogSettings, install_panic_hook};
use super::{PrivacyEngine, mask_tiktok_response};

const FIRST: &[&str] = &[
    "Mariana",
    "Joaquim",
    "Aiko",
    "Oluwaseun",
    "Guadalupe",
    "Siobhan",
    "Thiago",
    "Yuki",
    "Fatima",
    "Bartholomew",
];
const LAST: &[&str] = &[
    "Albuquerque",
    "Nakamura",
    "Okonkwo",
    "Fitzgerald",
    "Castellanos",
    "Wojciechowski",
    "Lindqvist",
    "Ferreira",
];
const STREETS: &[&str] = &[
    "Rua Augusta",
    "Coleman Avenue",
    "Baker Street",
    "Calle de Alcala",
    "Maple Crescent",
];

/// One synthetic person.
#[derive(Debug, Clone)]
struct Person {
    name: String,
    email: String,
    phones: Vec<String>,
    address: String,
    card: String,
    cpf: String,
    cpf_bare: String,
    ip: String,
    buyer_message: String,
}

fn digits(rng: &mut StdRng, n: usize) -> String {
    (0..n)
        .map(|_| char::from(b'0' + rng.random_range(0..10u8)))
        .collect()
}

fn luhn_complete(prefix: &str) -> String {
    (0..10)
        .map(|d| format!("{prefix}{d}"))
        .find(|s| super::detectors::luhn_ok(s))
        .unwrap_or_default()
}

fn cpf(rng: &mut StdRng) -> String {
    loop {
        let base = digits(rng, 9);
        let full = (0..100)
            .map(|cd| format!("{base}{cd:02}"))
            .find(|s| super::detectors::cpf_check_digits_ok(s));
        if let Some(c) = full {
            return c;
        }
    }
}

fn person(rng: &mut StdRng) -> Person {
    let first = FIRST[rng.random_range(0..FIRST.len())];
    let last = LAST[rng.random_range(0..LAST.len())];
    let card = luhn_complete(&format!("4{}", digits(rng, 14)));
    let card = match rng.random_range(0..3) {
        0 => card,
        1 => format!(
            "{} {} {} {}",
            &card[..4],
            &card[4..8],
            &card[8..12],
            &card[12..]
        ),
        _ => format!(
            "{}-{}-{}-{}",
            &card[..4],
            &card[4..8],
            &card[8..12],
            &card[12..]
        ),
    };
    let c = cpf(rng);
    let cpf_bare = cpf(rng);
    Person {
        name: format!("{first} {last}"),
        email: format!(
            "{}.{}{}@mail-{}.example.com",
            first.to_lowercase(),
            last.to_lowercase(),
            rng.random_range(10..99),
            digits(rng, 3)
        ),
        phones: vec![
            format!("+55 11 9{}-{}", digits(rng, 4), digits(rng, 4)),
            format!("(+1)213-{}-{}", digits(rng, 3), digits(rng, 4)),
            format!("+44 20 {} {}", digits(rng, 4), digits(rng, 4)),
            format!("({}) {}-{}", digits(rng, 3), digits(rng, 3), digits(rng, 4)),
            format!("{}.{}.{}", digits(rng, 3), digits(rng, 3), digits(rng, 4)),
            format!("07700 9{}", digits(rng, 5)),
        ],
        address: format!(
            "{} {} {}",
            rng.random_range(100..9999),
            STREETS[rng.random_range(0..STREETS.len())],
            last
        ),
        card,
        cpf: format!("{}.{}.{}-{}", &c[..3], &c[3..6], &c[6..9], &c[9..]),
        cpf_bare,
        ip: format!(
            "198.51.{}.{}",
            rng.random_range(0..255),
            rng.random_range(1..255)
        ),
        buyer_message: format!("please leave it with {first} at the back gate"),
    }
}

fn token(rng: &mut StdRng, n: usize) -> String {
    const A: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    (0..n)
        .map(|_| char::from(A[rng.random_range(0..A.len())]))
        .collect()
}

struct Corpus {
    people: Vec<Person>,
    tiktok_token: String,
    jwt: String,
    bearer: String,
    app_secret: String,
}

impl Corpus {
    fn new(seed: u64) -> Self {
        let mut rng = StdRng::seed_from_u64(seed);
        let people = (0..6).map(|_| person(&mut rng)).collect();
        Self {
            people,
            tiktok_token: format!("TTP_{}", token(&mut rng, 40)),
            jwt: format!(
                "eyJhbGciOiJSUzI1NiJ9.eyJ{}.{}",
                token(&mut rng, 30),
                token(&mut rng, 40)
            ),
            bearer: token(&mut rng, 32),
            app_secret: token(&mut rng, 24),
        }
    }

    /// Every value that must never be seen, including distinctive parts of longer ones.
    fn seeded(&self) -> Vec<String> {
        let mut v = vec![
            self.tiktok_token.clone(),
            self.jwt.clone(),
            self.bearer.clone(),
            self.app_secret.clone(),
        ];
        for p in &self.people {
            v.extend([
                p.name.clone(),
                p.email.clone(),
                p.address.clone(),
                p.card.clone(),
                p.cpf.clone(),
                p.cpf_bare.clone(),
                p.ip.clone(),
                p.buyer_message.clone(),
            ]);
            v.extend(p.phones.iter().cloned());
            if let Some(last) = p.name.split(' ').nth(1) {
                v.push(format!("{last}\""));
            }
        }
        v
    }

    /// A TikTok order response carrying person `p`.
    fn order_json(&self, p: &Person) -> String {
        serde_json::json!({
            "code": 0, "message": "Success", "request_id": "202203070749000101890810281E8C70B7",
            "data": {"orders": [{
                "id": "576461413038785752", "status": "AWAITING_SHIPMENT", "create_time": 1619611561,
                "user_id": "7021436810468230477", "buyer_email": p.email, "buyer_message": p.buyer_message,
                "cpf": p.cpf, "cpf_name": p.name, "payment_auth_code": p.card,
                "recipient_address": {
                    "name": p.name, "phone_number": p.phones[0], "full_address": p.address,
                    "postal_code": "SW1A 2AA", "address_line1": p.address,
                    "brand_new_field": p.phones[2],
                    "district_info": [{"address_level_name": "City", "address_name": p.address}]
                },
                "line_items": [{"id": "577086512123755123", "sku_id": "2729382476852921560", "tracking_number": p.phones[3]}],
                "some_future_field": format!("{} {}", p.email, p.phones[4])
            }]}
        })
        .to_string()
    }
}

/// An error type whose Display carries request data, as careless code might write it.
#[derive(Debug)]
struct UpstreamError {
    detail: String,
}

impl fmt::Display for UpstreamError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "upstream refused: {}", self.detail)
    }
}

fn assert_clean(what: &str, out: &str, seeded: &[String]) {
    for s in seeded {
        assert!(
            !out.contains(s.as_str()),
            "{what}: seeded value {s:?} leaked in:\n{out}"
        );
    }
}

/// Runs every log path; returns what an operator would see.
fn every_log_path(e: &PrivacyEngine, c: &Corpus) -> String {
    let mut out = String::new();
    for p in &c.people {
        // Free text (error messages, upstream bodies echoed in errors).
        let text = format!(
            "refused: buyer {} phones {} card {} cpf {} / {} from {} token {} auth Bearer {} jwt {}",
            p.email,
            p.phones.join(" ; "),
            p.card,
            p.cpf,
            p.cpf_bare,
            p.ip,
            c.tiktok_token,
            c.bearer,
            c.jwt
        );
        out.push_str(&e.redact_text(&text));
        out.push('\n');
        // 4xx refusal: data in headers, query and body.
        let mut h = http::HeaderMap::new();
        h.insert(
            "authorization",
            format!("Bearer {}", c.bearer).parse().expect("header"),
        );
        h.insert(
            "x-tts-access-token",
            c.tiktok_token.parse().expect("header"),
        );
        h.insert("x-buyer-email", p.email.parse().expect("header"));
        h.insert("x-forwarded-for", p.ip.parse().expect("header"));
        h.insert(
            "user-agent",
            format!("crm/2.1 (contact {})", p.email)
                .parse()
                .expect("header"),
        );
        out.push_str(&e.redact_headers(&h).to_string());
        out.push_str(&serde_json::to_string(&e.redact_headers(&h)).expect("serialises"));
        let q: String = form_urlencoded::Serializer::new(String::new())
            .append_pair("app_key", "29a39d")
            .append_pair("app_secret", &c.app_secret)
            .append_pair("access_token", &c.tiktok_token)
            .append_pair("buyer_name", &p.name)
            .append_pair("phone", &p.phones[1])
            .append_pair("ids", "576461413038785752")
            .finish();
        out.push_str(&e.redact_query(&q));
        let body = c.order_json(p);
        out.push_str(&e.redact_body_for_log(body.as_bytes()));
        // Webhook: customer-service message and address update.
        let chat = serde_json::json!({"type": 14, "shop_id": "7495540735365777507", "data": {"conversation_id": "1", "content": p.buyer_message, "sender": {"nickname": p.name, "im_user_id": "7494560109732334261"}}});
        out.push_str(&e.redact_body_for_log(chat.to_string().as_bytes()));
        // Upstream error text that is not JSON.
        out.push_str(
            &e.redact_body_for_log(format!("502 from upstream for {}", p.email).as_bytes()),
        );
    }
    out
}

#[test]
fn no_seeded_value_survives_any_log_path() {
    let e = engine();
    for seed in [1, 2, 3] {
        let c = Corpus::new(seed);
        let out = every_log_path(&e, &c);
        assert_clean("log paths", &out, &c.seeded());
        // Non-personal parts are still there for operators.
        assert!(
            out.contains("576461413038785752") && out.contains("app_key=29a39d"),
            "{out}"
        );
    }
}

#[test]
fn no_seeded_value_survives_response_masking() {
    let e = engine();
    let c = Corpus::new(7);
    for p in &c.people {
        let masked = mask_tiktok_response(c.order_json(p).as_bytes(), &e).expect("masks");
        let masked = String::from_utf8(masked).expect("UTF-8");
        let seeded: Vec<String> = c
            .seeded()
            .into_iter()
            .filter(|s| !s.starts_with("TTP_") && !s.starts_with("eyJ"))
            .collect();
        assert_clean("masked response", &masked, &seeded);
        assert!(masked.contains("2729382476852921560"));
    }
}

#[test]
fn no_seeded_value_survives_the_tracing_writer() {
    for format in [LogFormat::Json, LogFormat::Text] {
        let shared = engine().into_shared();
        let logs = CapturedLogs::new();
        let settings = LogSettings {
            filter: "trace".into(),
            format,
        };
        let sub = logs.subscriber(&settings, shared.clone()).expect("builds");
        let c = Corpus::new(11);
        let previous = std::panic::take_hook();
        install_panic_hook(shared.clone());
        tracing::subscriber::with_default(sub, || {
            for p in &c.people {
                let span =
                    tracing::info_span!("request", client_ip = %p.ip, route = "tiktok-orders");
                let _g = span.enter();
                tracing::debug!(?p, "debug dump of the whole person");
                tracing::trace!(body = %c.order_json(p), "response body");
                tracing::info!(email = %p.email, phone = %p.phones[5], card = %p.card, "buyer");
                tracing::info!(name = %p.name, full_address = %p.address, buyer_message = %p.buyer_message, "structured fields");
                let err = UpstreamError {
                    detail: format!(
                        "cpf={} phone={} token={}",
                        p.cpf, p.phones[1], c.tiktok_token
                    ),
                };
                tracing::warn!(error = %err, "upstream error");
                tracing::error!(error = ?err, "upstream error debug");
                tracing::info!(
                    "token {} jwt {} secret app_secret={}",
                    c.tiktok_token,
                    c.jwt,
                    c.app_secret
                );
                let r =
                    std::panic::catch_unwind(|| panic!("bad state for {} at {}", p.email, p.ip));
                assert!(r.is_err());
            }
        });
        std::panic::set_hook(previous);
        let out = logs.contents();
        assert!(
            out.lines().count() >= 6 * 8,
            "{format:?}: every event logged:\n{out}"
        );
        assert_clean(&format!("tracing {format:?}"), &out, &c.seeded());
    }
}
