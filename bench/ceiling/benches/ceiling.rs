//! What one client_credentials token costs at the least, piece by piece, with the same
//! code the server runs: the secret check (SHA-256 and a constant-time compare), the
//! claims serialisation, the signature (JWS compact) in each algorithm Tessera signs with
//! (ES256, RS256, EdDSA), and the whole decision function (parse, checks, trace) for a
//! granted request.

use std::sync::Arc;

use criterion::{Criterion, black_box, criterion_group, criterion_main};
use tessera_core::decision::{ClientFacts, DecideOptions, Facts, decide, parse};
use tessera_core::jwt::{AccessClaims, Alg, SigningKey, generate_pkcs8};
use tessera_core::model::{
    AuthMethod, Client, ClientId, GrantType, IpAllowList, Org, OrgSlug, ScopeName, StoredSecret,
};
use tessera_core::request::RawTokenRequest;
use tessera_core::secret::{hash_client_secret, hashes_equal};

const SECRET: &str = "tsec_0123456789abcdefghijklmnopqrstuvwxyzABCDEFG";

fn claims() -> AccessClaims {
    AccessClaims {
        iss: "http://127.0.0.1:8080".into(),
        sub: "usr_Y9vDegDiuRtS59kL1WtYSA".into(),
        aud: "http://127.0.0.1:8080".into(),
        client_id: "bench".into(),
        org: "default".into(),
        scope: "api:read".into(),
        jti: "01M7XN5HEBH781186ZZ0TPGQ89".into(),
        iat: 1_795_217_868,
        exp: 1_795_221_468,
        cred: Some("sec_1".into()),
        gid: None,
    }
}

fn facts() -> Facts {
    let client = Client {
        client_id: ClientId::parse("bench").unwrap(),
        org_id: 1,
        name: "bench".into(),
        enabled: true,
        grant_types: vec![GrantType::ClientCredentials],
        scopes: vec![ScopeName::parse("api:read").unwrap()],
        redirect_uris: vec![],
        auth_methods: vec![AuthMethod::ClientSecretBasic, AuthMethod::ClientSecretPost],
        ip_allowlist: IpAllowList::default(),
        service_account_id: None,
        token_ttl: 3600,
        created_at: 0,
        interactive: Default::default(),
        jwks: None,
        jwks_uri: None,
    };
    let secret = StoredSecret {
        id: "sec_1".into(),
        client_id: client.client_id.clone(),
        hash: hash_client_secret(SECRET),
        hint: "DEFG".into(),
        created_at: 0,
        expires_at: None,
        revoked_at: None,
        last_used_at: None,
        last_used_from: None,
    };
    Facts {
        client: Some(Arc::new(ClientFacts {
            client,
            secrets: vec![secret],
            org: Arc::new(Org {
                id: 1,
                slug: OrgSlug::parse("default").unwrap(),
                enabled: true,
                sso_enforced: false,
                created_at: 0,
            }),
            service_account: None,
            known_scopes: vec![ScopeName::parse("api:read").unwrap()].into(),
        })),
        throttle: Default::default(),
        grant: Default::default(),
        assertion_seen: false,
        remote_jwks: None,
    }
}

fn bench(c: &mut Criterion) {
    let stored = hash_client_secret(SECRET);
    c.bench_function("secret_check", |b| {
        b.iter(|| hashes_equal(&hash_client_secret(black_box(SECRET)), &stored))
    });
    let cl = claims();
    c.bench_function("claims_json", |b| b.iter(|| serde_json_len(black_box(&cl))));
    for alg in Alg::ALL {
        let key = SigningKey::from_pkcs8("k1", alg, &generate_pkcs8(alg)).unwrap();
        let name = format!("{}_jws", alg.as_str().to_ascii_lowercase());
        c.bench_function(&name, |b| b.iter(|| key.sign(black_box(&cl))));
    }
    let f = facts();
    let auth = format!(
        "Basic {}",
        base64_encode(format!("bench:{SECRET}").as_bytes())
    );
    c.bench_function("decision", |b| {
        b.iter(|| {
            let raw = RawTokenRequest {
                content_type: Some("application/x-www-form-urlencoded"),
                body: b"grant_type=client_credentials",
                body_too_large: false,
                authorization: Some(&auth),
                source_ip: "127.0.0.1".parse().unwrap(),
            };
            decide(parse(black_box(&raw)), &f, 1_795_217_868, DecideOptions::default())
        })
    });
}

/// The claims serialisation the signer performs, isolated.
fn serde_json_len(c: &AccessClaims) -> usize {
    serde_json::to_vec(c).unwrap().len()
}

fn base64_encode(b: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(b)
}

criterion_group!(benches, bench);
criterion_main!(benches);
