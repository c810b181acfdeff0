//! JWT verification cost: cold (signature checked every time, cache off) and cached (repeat
//! token served from the verified-token cache), for RS256 and ES256.

use std::hint::black_box;
use std::sync::Arc;

use criterion::{Criterion, criterion_group, criterion_main};
use tiktok_gateway::auth::jwt::{
    JwksStore, JwtAlgorithm, JwtIssuerSettings, JwtVerifier, KeySource, parse_jwks,
};
use tiktok_gateway::clock::{SharedClock, SystemClock};
use tiktok_gateway::sandbox::idp::{DEV_AUDIENCE, DevAlg, DevSigner, MintRequest};

const ISS: &str = "https://idp.bench";

fn verifier(signer: &DevSigner, clock: &SharedClock, cache_capacity: usize) -> JwtVerifier {
    let mut s = JwtIssuerSettings::new(
        "bench",
        ISS,
        vec![DEV_AUDIENCE.into()],
        KeySource::JwksFile("unused".into()),
        vec![JwtAlgorithm::RS256, JwtAlgorithm::ES256],
    );
    s.cache_capacity = cache_capacity;
    let set = parse_jwks(
        signer.jwks().to_string().as_bytes(),
        &s.jwks_limits,
        &s.algorithms,
    )
    .expect("bench JWKS parses");
    let store = JwksStore::fixed("bench", set, Arc::clone(clock));
    JwtVerifier::with_store(&s, store, Arc::clone(clock)).expect("bench settings are valid")
}

fn bench(c: &mut Criterion) {
    let clock: SharedClock = Arc::new(SystemClock);
    let signer = DevSigner::new(ISS, Arc::clone(&clock)).expect("dev keys");
    let cold = verifier(&signer, &clock, 0);
    let cached = verifier(&signer, &clock, 1024);
    for (name, alg) in [("rs256", DevAlg::RS256), ("es256", DevAlg::ES256)] {
        let token = signer
            .mint(&MintRequest {
                alg,
                sub: Some("svc-orders".into()),
                scope: Some("orders:read pii:read".into()),
                ttl_seconds: Some(3600),
                ..MintRequest::default()
            })
            .expect("mint");
        // The fixed store never awaits, so a trivial executor polls each call to completion.
        futures::executor::block_on(cached.verify(&token)).expect("token verifies");
        c.bench_function(&format!("jwt_verify_cold_{name}"), |b| {
            b.iter(|| futures::executor::block_on(cold.verify(black_box(&token))).is_ok())
        });
        c.bench_function(&format!("jwt_verify_cached_{name}"), |b| {
            b.iter(|| futures::executor::block_on(cached.verify(black_box(&token))).is_ok())
        });
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
