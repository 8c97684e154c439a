//! The local identity provider and the JWT authorizer.
//!
//! API Gateway's JWT authorizer takes RSA-signed tokens only, checks the signature against
//! the issuer's keys, `iss`, `aud` and `exp` (and `nbf`), and hands the claims to the
//! function as strings. The local issuer signs RS256 tokens with a key of its own, kept in
//! the local state folder (created on first use, never committed), and publishes the public
//! half as a JWKS, as an OpenID provider does.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rsa::{KeyPair, KeySize};
use aws_lc_rs::signature::KeyPair as _;
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde_json::{Value, json};

pub type Error = Box<dyn std::error::Error + Send + Sync>;

/// The file under the state folder that holds the issuer's private key (PKCS#8 PEM).
pub const KEY_FILE: &str = "jwt-signing-key.pem";

/// The local issuer: it signs tokens and verifies them as the template's authorizer does.
pub struct Issuer {
    issuer: String,
    audience: String,
    kid: String,
    encoding: EncodingKey,
    decoding: DecodingKey,
    modulus: Vec<u8>,
    exponent: Vec<u8>,
}

impl std::fmt::Debug for Issuer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Issuer")
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

impl Issuer {
    /// The issuer whose key is in `state` (made there, readable by its owner only, when
    /// missing).
    pub fn open(state: &Path, issuer: &str, audience: &str) -> Result<Issuer, Error> {
        let path: PathBuf = state.join(KEY_FILE);
        let pem = match std::fs::read(&path) {
            Ok(pem) => pem,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                std::fs::create_dir_all(state)?;
                let pem = new_key_pem()?;
                write_private(&path, pem.as_bytes())?;
                pem.into_bytes()
            }
            Err(e) => return Err(format!("cannot read {}: {e}", path.display()).into()),
        };
        Issuer::from_pem(&pem, issuer, audience)
    }

    /// An issuer with a key that lives as long as it does (tests).
    pub fn ephemeral(issuer: &str, audience: &str) -> Result<Issuer, Error> {
        Issuer::from_pem(new_key_pem()?.as_bytes(), issuer, audience)
    }

    fn from_pem(pem: &[u8], issuer: &str, audience: &str) -> Result<Issuer, Error> {
        let der = pem_body(pem)?;
        let pair = KeyPair::from_pkcs8(&der).map_err(|e| format!("the signing key: {e}"))?;
        let public = pair.public_key();
        let modulus = public.modulus().big_endian_without_leading_zero().to_vec();
        let exponent = public.exponent().big_endian_without_leading_zero().to_vec();
        let encoding = EncodingKey::from_rsa_pem(pem)?;
        let decoding = DecodingKey::from_rsa_raw_components(&modulus, &exponent);
        // A key id from the modulus, so a new key is a new kid.
        let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &modulus);
        let kid = hex::encode(&digest.as_ref()[..8]);
        Ok(Issuer {
            issuer: issuer.to_owned(),
            audience: audience.to_owned(),
            kid,
            encoding,
            decoding,
            modulus,
            exponent,
        })
    }

    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    pub fn audience(&self) -> &str {
        &self.audience
    }

    /// A token for `sub` (with `email` `<sub>@example.com`) that expires `ttl_seconds`
    /// after `now` (negative: already expired).
    pub fn token(&self, sub: &str, now: i64, ttl_seconds: i64) -> Result<String, Error> {
        self.sign(&json!({
            "sub": sub,
            "email": format!("{sub}@example.com"),
            "iss": self.issuer,
            "aud": self.audience,
            "iat": now,
            "exp": now + ttl_seconds,
        }))
    }

    /// Any claims, signed by this issuer (tests make wrong ones with it).
    pub fn sign(&self, claims: &Value) -> Result<String, Error> {
        let mut header = Header::new(Algorithm::RS256);
        header.kid = Some(self.kid.clone());
        Ok(jsonwebtoken::encode(&header, claims, &self.encoding)?)
    }

    /// The claims of `authorization` (`Bearer <jwt>`, or the bare token, as API Gateway
    /// takes either) as API Gateway hands them to the function: every claim a string.
    /// `None`: API Gateway's 401.
    pub fn verify(&self, authorization: &str) -> Option<BTreeMap<String, String>> {
        let token = authorization
            .strip_prefix("Bearer ")
            .or_else(|| authorization.strip_prefix("bearer "))
            .unwrap_or(authorization)
            .trim();
        let mut validation = Validation::new(Algorithm::RS256);
        validation.set_issuer(&[&self.issuer]);
        validation.set_audience(&[&self.audience]);
        validation.set_required_spec_claims(&["exp", "iss", "aud"]);
        validation.validate_nbf = true;
        // API Gateway allows no clock skew of its own; jsonwebtoken's default is 60 s.
        validation.leeway = 0;
        let data =
            jsonwebtoken::decode::<BTreeMap<String, Value>>(token, &self.decoding, &validation).ok()?;
        Some(
            data.claims
                .into_iter()
                .map(|(name, value)| {
                    let text = match value {
                        Value::String(s) => s,
                        // Arrays as API Gateway writes them: "[a b]".
                        Value::Array(items) => format!(
                            "[{}]",
                            items
                                .iter()
                                .map(|i| i.as_str().map_or_else(|| i.to_string(), str::to_owned))
                                .collect::<Vec<_>>()
                                .join(" ")
                        ),
                        other => other.to_string(),
                    };
                    (name, text)
                })
                .collect(),
        )
    }

    /// The issuer's public key as a JSON Web Key Set.
    pub fn jwks(&self) -> Value {
        json!({"keys": [{
            "kty": "RSA",
            "use": "sig",
            "alg": "RS256",
            "kid": self.kid,
            "n": URL_SAFE_NO_PAD.encode(&self.modulus),
            "e": URL_SAFE_NO_PAD.encode(&self.exponent),
        }]})
    }

    /// The OpenID provider configuration API Gateway reads to find `jwks_uri`.
    pub fn openid_configuration(&self) -> Value {
        json!({
            "issuer": self.issuer,
            "jwks_uri": format!("{}.well-known/jwks.json", with_slash(&self.issuer)),
            "id_token_signing_alg_values_supported": ["RS256"],
            "response_types_supported": ["id_token"],
            "subject_types_supported": ["public"],
        })
    }
}

fn with_slash(url: &str) -> String {
    if url.ends_with('/') {
        url.to_owned()
    } else {
        format!("{url}/")
    }
}

fn new_key_pem() -> Result<String, Error> {
    let pair = KeyPair::generate(KeySize::Rsa2048).map_err(|_| "cannot make an RSA key")?;
    let der = pair.as_der().map_err(|_| "cannot encode the RSA key")?;
    let body = STANDARD.encode(der.as_ref());
    let lines: Vec<&str> = body
        .as_bytes()
        .chunks(64)
        .map(|c| std::str::from_utf8(c).unwrap_or_default())
        .collect();
    Ok(format!(
        "-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n",
        lines.join("\n")
    ))
}

fn pem_body(pem: &[u8]) -> Result<Vec<u8>, Error> {
    let text = std::str::from_utf8(pem).map_err(|_| "the signing key is not PEM")?;
    let body: String = text
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect::<Vec<_>>()
        .concat();
    Ok(STANDARD.decode(body.trim())?)
}

#[cfg(unix)]
fn write_private(path: &Path, bytes: &[u8]) -> Result<(), Error> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(bytes)?;
    Ok(())
}

#[cfg(not(unix))]
fn write_private(path: &Path, bytes: &[u8]) -> Result<(), Error> {
    Ok(std::fs::write(path, bytes)?)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    const ISS: &str = "http://127.0.0.1:3000/";
    const AUD: &str = "agent-credits-dashboard";

    fn now() -> i64 {
        chrono::Utc::now().timestamp()
    }

    #[test]
    fn a_token_it_signed_verifies_with_its_claims_as_strings() {
        let issuer = Issuer::ephemeral(ISS, AUD).unwrap();
        let token = issuer.token("u_me", now(), 3600).unwrap();
        let claims = issuer.verify(&format!("Bearer {token}")).unwrap();
        assert_eq!(claims["sub"], "u_me");
        assert_eq!(claims["email"], "u_me@example.com");
        assert_eq!(claims["iss"], ISS);
        assert_eq!(claims["aud"], AUD);
        assert!(claims["exp"].parse::<i64>().is_ok());
        // The bare token too, as API Gateway accepts it.
        assert!(issuer.verify(&token).is_some());
    }

    #[test]
    fn expired_foreign_and_misaddressed_tokens_are_refused() {
        let issuer = Issuer::ephemeral(ISS, AUD).unwrap();
        let other = Issuer::ephemeral(ISS, AUD).unwrap();
        let t = now();
        assert!(
            issuer.verify(&issuer.token("u", t, -1).unwrap()).is_none(),
            "expired"
        );
        assert!(
            issuer.verify(&other.token("u", t, 60).unwrap()).is_none(),
            "other key"
        );
        let claims = |iss: &str, aud: &str| json!({"sub":"u","iss":iss,"aud":aud,"exp":t+60});
        assert!(
            issuer
                .verify(&issuer.sign(&claims("https://evil/", AUD)).unwrap())
                .is_none()
        );
        assert!(
            issuer
                .verify(&issuer.sign(&claims(ISS, "someone-else")).unwrap())
                .is_none()
        );
        assert!(
            issuer
                .verify(&issuer.sign(&json!({"sub":"u","iss":ISS,"aud":AUD})).unwrap())
                .is_none(),
            "no exp"
        );
        let early = json!({"sub":"u","iss":ISS,"aud":AUD,"exp":t+120,"nbf":t+60});
        assert!(
            issuer.verify(&issuer.sign(&early).unwrap()).is_none(),
            "not yet valid"
        );
        // A token whose payload was changed after signing.
        let token = issuer.token("u_me", t, 60).unwrap();
        let mut parts: Vec<String> = token.split('.').map(str::to_owned).collect();
        parts[1] =
            URL_SAFE_NO_PAD.encode(json!({"sub":"u_owner","iss":ISS,"aud":AUD,"exp":t+60}).to_string());
        assert!(issuer.verify(&parts.join(".")).is_none(), "tampered");
        // HS256 signed with the public modulus as the secret: the algorithm is pinned.
        let forged = jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &json!({"sub":"u","iss":ISS,"aud":AUD,"exp":t+60}),
            &EncodingKey::from_secret(&issuer.modulus).unwrap(),
        )
        .unwrap();
        assert!(issuer.verify(&forged).is_none(), "alg switched");
        assert!(issuer.verify("Bearer not-a-jwt").is_none());
        assert!(issuer.verify("").is_none());
    }

    #[test]
    fn the_key_is_kept_in_the_state_folder_and_reused() {
        let dir = std::env::temp_dir().join(format!("gw-jwt-{}", fastrand::u64(..)));
        let first = Issuer::open(&dir, ISS, AUD).unwrap();
        let second = Issuer::open(&dir, ISS, AUD).unwrap();
        let token = first.token("u_me", now(), 60).unwrap();
        assert!(second.verify(&token).is_some());
        assert_eq!(first.jwks(), second.jwks());
        assert_eq!(
            first.openid_configuration()["jwks_uri"],
            "http://127.0.0.1:3000/.well-known/jwks.json"
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.join(KEY_FILE))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
