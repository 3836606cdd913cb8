use super::*;
use base64::Engine;
use proptest::prelude::Strategy;

const SECRET: &str = "unit-test-secret-0123456789";
const KEYS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/keys");

fn key(name: &str) -> String {
    std::fs::read_to_string(format!("{KEYS}/{name}")).unwrap()
}

fn cfg(f: impl FnOnce(&mut Config)) -> Config {
    let mut c = Config::load(None, Vec::new(), true).unwrap();
    c.auth_hs256_secret = Some(SECRET.into());
    f(&mut c);
    c
}

fn claims(sub: &str, exp_in: f64) -> wire::Claims {
    let now = now_secs();
    wire::Claims {
        sub: sub.into(),
        exp: now + exp_in,
        nbf: None,
        iat: Some(now),
        aud: None,
        iss: None,
        scope: None,
    }
}

fn sign(alg: Algorithm, key: &EncodingKey, c: &wire::Claims) -> String {
    jsonwebtoken::encode(&Header::new(alg), c, key).unwrap()
}

#[test]
fn hs256_tokens_verify_with_scopes() {
    let v = Verifier::from_config(&cfg(|_| {})).unwrap();
    let p = v.verify(&sign_hs256(SECRET, &claims("u1", 60.0))).unwrap();
    assert_eq!(&*p.user_id, "u1");
    assert!(!p.publish && !p.admin);
    let p = v
        .verify(&sign_hs256(SECRET, &claims("svc", 60.0).with_scope("gateway.publish other")))
        .unwrap();
    assert!(p.publish && !p.admin);
}

#[test]
fn alg_none_is_refused() {
    let v = Verifier::from_config(&cfg(|_| {})).unwrap();
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let header = b64.encode(r#"{"alg":"none","typ":"JWT"}"#);
    let body = b64.encode(serde_json::to_vec(&claims("u1", 60.0)).unwrap());
    for token in [format!("{header}.{body}."), format!("{header}.{body}")] {
        let e = v.verify(&token).unwrap_err();
        assert_eq!(e.code, "invalid_token", "{e}");
    }
}

#[test]
fn alg_confusion_with_the_rsa_public_key_as_hmac_secret_is_refused() {
    let public = key("rsa_public.pem");
    let v = Verifier::from_config(&cfg(|c| {
        c.auth_hs256_secret = None;
        c.auth_public_key_pem = Some(public.clone());
    }))
    .unwrap();
    let forged =
        sign(Algorithm::HS256, &EncodingKey::from_secret(public.as_bytes()), &claims("u1", 60.0));
    let e = v.verify(&forged).unwrap_err();
    assert!(e.message.contains("not accepted"), "{e}");
}

#[test]
fn rs256_and_es256_verify_and_a_foreign_key_does_not() {
    let rsa = Verifier::from_config(&cfg(|c| c.auth_public_key_pem = Some(key("rsa_public.pem"))))
        .unwrap();
    let good = EncodingKey::from_rsa_pem(key("rsa_private.pem").as_bytes()).unwrap();
    assert!(rsa.verify(&sign(Algorithm::RS256, &good, &claims("u", 60.0))).is_ok());
    assert!(
        rsa.verify(&sign_hs256(SECRET, &claims("u", 60.0))).is_ok(),
        "both configured: both taken"
    );
    let bad = EncodingKey::from_rsa_pem(key("other_rsa_private.pem").as_bytes()).unwrap();
    assert!(rsa.verify(&sign(Algorithm::RS256, &bad, &claims("u", 60.0))).is_err());

    let ec = Verifier::from_config(&cfg(|c| c.auth_public_key_pem = Some(key("ec_public.pem"))))
        .unwrap();
    let ec_key = EncodingKey::from_ec_pem(key("ec_private.pem").as_bytes()).unwrap();
    assert!(ec.verify(&sign(Algorithm::ES256, &ec_key, &claims("u", 60.0))).is_ok());
    assert!(ec.verify(&sign(Algorithm::RS256, &good, &claims("u", 60.0))).is_err());
}

#[test]
fn a_bad_key_file_names_the_setting() {
    let e =
        Verifier::from_config(&cfg(|c| c.auth_public_key_pem = Some("-----BEGIN nothing".into())));
    assert_eq!(e.err().unwrap().setting, "GATEWAY_AUTH_PUBLIC_KEY_FILE");
}

#[test]
fn exp_and_nbf_use_the_leeway_in_milliseconds() {
    let v = Verifier::from_config(&cfg(|c| c.auth_leeway_ms = 2000)).unwrap();
    assert!(v.verify(&sign_hs256(SECRET, &claims("u", -1.0))).is_ok(), "1 s past exp, inside 2 s");
    let e = v.verify(&sign_hs256(SECRET, &claims("u", -3.0))).unwrap_err();
    assert_eq!(e.code, "token_expired");
    let mut early = claims("u", 60.0);
    early.nbf = Some(now_secs() + 10.0);
    assert!(v.verify(&sign_hs256(SECRET, &early)).unwrap_err().message.contains("nbf"));
    early.nbf = Some(now_secs() + 1.0);
    assert!(v.verify(&sign_hs256(SECRET, &early)).is_ok());
}

#[test]
fn audience_and_issuer_are_checked_when_configured() {
    let v = Verifier::from_config(&cfg(|c| {
        c.auth_audience = Some("gw".into());
        c.auth_issuer = Some("idp".into());
    }))
    .unwrap();
    let mut c = claims("u", 60.0);
    assert!(v.verify(&sign_hs256(SECRET, &c)).unwrap_err().message.contains("audience"));
    c.aud = Some(wire::claims::Audience::Many(vec!["x".into(), "gw".into()]));
    assert!(v.verify(&sign_hs256(SECRET, &c)).unwrap_err().message.contains("issuer"));
    c.iss = Some("idp".into());
    assert!(v.verify(&sign_hs256(SECRET, &c)).is_ok());
    c.aud = Some(wire::claims::Audience::One("other".into()));
    assert!(v.verify(&sign_hs256(SECRET, &c)).is_err());
}

#[test]
fn missing_sub_or_exp_is_named() {
    let v = Verifier::from_config(&cfg(|_| {})).unwrap();
    let key = EncodingKey::from_secret(SECRET.as_bytes());
    let no_sub = jsonwebtoken::encode(
        &Header::default(),
        &serde_json::json!({"exp": now_secs() + 60.0}),
        &key,
    )
    .unwrap();
    assert!(v.verify(&no_sub).unwrap_err().message.contains("sub"));
    let no_exp =
        jsonwebtoken::encode(&Header::default(), &serde_json::json!({"sub": "u"}), &key).unwrap();
    assert!(v.verify(&no_exp).unwrap_err().message.contains("exp"));
    assert!(v.verify("not.a.jwt").is_err());
}

#[test]
fn an_unknown_critical_header_extension_is_refused() {
    let v = Verifier::from_config(&cfg(|_| {})).unwrap();
    let mut header = Header::new(Algorithm::HS256);
    header.crit = Some(vec!["exp-ext".into()]);
    let key = EncodingKey::from_secret(SECRET.as_bytes());
    let token = jsonwebtoken::encode(&header, &claims("u1", 60.0), &key).unwrap();
    let e = v.verify(&token).unwrap_err();
    assert!(e.message.contains("crit"), "{e}");
}

#[test]
fn a_sub_with_control_characters_or_too_long_is_refused_and_tid_is_read() {
    let v = Verifier::from_config(&cfg(|_| {})).unwrap();
    for sub in ["a\u{0}b", "line\nbreak", "\u{7f}", &"x".repeat(257), ""] {
        let e = v.verify(&sign_hs256(SECRET, &claims(sub, 60.0))).unwrap_err();
        assert_eq!(e.code, "invalid_token", "{sub:?}");
    }
    let p = v.verify(&sign_hs256(SECRET, &claims(&"é".repeat(128), 60.0))).unwrap();
    assert_eq!(p.user_id.len(), 256);
    let key = EncodingKey::from_secret(SECRET.as_bytes());
    let mut c = serde_json::to_value(claims("u1", 60.0)).unwrap();
    c["tid"] = "acme.eu-1".into();
    let p = v.verify(&jsonwebtoken::encode(&Header::default(), &c, &key).unwrap()).unwrap();
    assert_eq!(p.tenant.as_deref(), Some("acme.eu-1"));
    c["tid"] = "bad tenant".into();
    assert!(v.verify(&jsonwebtoken::encode(&Header::default(), &c, &key).unwrap()).is_err());
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(1000))]
    /// Whatever arrives as a token is refused with a reason or verified, never a panic.
    #[test]
    fn any_token_text_is_refused_not_a_panic(token in ".{0,300}") {
        let v = Verifier::from_config(&cfg(|_| {})).unwrap();
        let e = v.verify(&token).unwrap_err();
        proptest::prop_assert!(!e.message.is_empty());
    }

    /// Any header and claims, signed with the right key: verified only when the claims hold.
    #[test]
    fn signed_tokens_with_any_claims_are_checked_claim_by_claim(
        header in "\\{\"alg\":\"HS256\"(,\"[a-z]{1,4}\":(\"[a-z]{0,4}\"|[0-9]{1,3}|\\[\\]))?\\}",
        sub in proptest::prelude::prop_oneof![".{0,10}".prop_map(serde_json::Value::from), proptest::prelude::Just(serde_json::Value::Null)],
        exp_in in -100.0f64..100.0,
        tid in proptest::option::of(".{0,8}"),
    ) {
        use base64::Engine;
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let mut claims = serde_json::json!({"sub": sub, "exp": now_secs() + exp_in});
        if let Some(t) = &tid {
            claims["tid"] = t.clone().into();
        }
        let signing_input = format!("{}.{}", b64.encode(&header), b64.encode(claims.to_string()));
        let key = EncodingKey::from_secret(SECRET.as_bytes());
        let sig = jsonwebtoken::crypto::sign(signing_input.as_bytes(), &key, Algorithm::HS256).unwrap();
        let v = Verifier::from_config(&cfg(|_| {})).unwrap();
        let ok = v.verify(&format!("{signing_input}.{sig}")).is_ok();
        let sub_ok = sub.as_str().is_some_and(valid_sub);
        let tid_ok = tid.as_deref().is_none_or(valid_tenant);
        let header_ok = !header.contains("\"crit\"");
        if ok {
            proptest::prop_assert!(sub_ok && tid_ok && header_ok && exp_in > -5.0);
        } else if sub_ok && tid_ok && header_ok && exp_in > 0.0 {
            // Only an unknown header field of an odd type may still refuse it.
            proptest::prop_assert!(header.len() > 15, "refused a good token: {header} {claims}");
        }
    }
}
