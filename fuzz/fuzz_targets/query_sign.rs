//! Query parsing and signing on arbitrary query strings: no panic, and the signature does not
//! depend on the order of the parameters.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tiktok_gateway::tiktok::query::{CallerQuery, EgressRequest, ShopCredentials, sign_request};
use tiktok_gateway::tiktok::sign::sign;

const SHOP: ShopCredentials<'static> = ShopCredentials {
    app_key: "fuzz_app",
    app_secret: b"fuzz-secret",
    access_token: "fuzz_token",
    shop_cipher: Some("fuzz_cipher"),
};

fuzz_target!(|raw: &str| {
    let Ok(query) = CallerQuery::parse(raw) else {
        return;
    };
    let forward: Vec<(&str, &str)> = query.pairs().collect();
    let reversed: Vec<(&str, &str)> = forward.iter().rev().copied().collect();
    assert_eq!(
        sign(b"k", "/p", &forward, Some(b"{}")),
        sign(b"k", "/p", &reversed, Some(b"{}"))
    );

    // The same query with its segments in reverse order signs to the same request. Only the
    // outcome is compared for refusals: which of two bad segments is named first depends on order.
    let flipped: Vec<&str> = raw.split('&').rev().collect();
    let flipped = flipped.join("&");
    let request = |q: &str| {
        sign_request(
            &EgressRequest {
                path: "/order/202309/orders/search",
                raw_query: Some(q),
                body: b"{}",
                content_type: None,
            },
            &SHOP,
            1_700_000_000,
        )
        .map(|r| r.path_and_query)
        .ok()
    };
    assert_eq!(request(raw), request(&flipped));
});
