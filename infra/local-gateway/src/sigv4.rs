//! The IAM authorizer: AWS Signature Version 4, verified.
//!
//! The request is signed with one of the local credential pairs (the agent runtime's or an
//! operator's); the signature is computed again from the request as it arrived and compared
//! in constant time. What passes gets the identity API Gateway would report for that pair's
//! role. Signed with curl's `--aws-sigv4`, the AWS SDK's signer, botocore or `awscurl`.

use std::collections::BTreeMap;

use chrono::{DateTime, NaiveDateTime, Utc};
use hmac::{Hmac, KeyInit, Mac};
use sha2::{Digest, Sha256};

/// The service name API Gateway's signatures are scoped to.
pub const SERVICE: &str = "execute-api";
/// How far a signature's time may be from now (SigV4's window).
pub const MAX_SKEW_SECONDS: i64 = 5 * 60;

/// A local credential pair and the role it acts as.
#[derive(Clone)]
pub struct Credential {
    pub access_key_id: String,
    pub secret_access_key: String,
    /// The IAM role (`arn:aws:iam::<account>:role/<name>`) a caller with this pair acts as.
    pub role_arn: String,
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credential")
            .field("access_key_id", &self.access_key_id)
            .field("role_arn", &self.role_arn)
            .finish_non_exhaustive()
    }
}

/// Who signed, as API Gateway's IAM authorizer describes the caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub access_key: String,
    pub account_id: String,
    /// `arn:aws:sts::<account>:assumed-role/<role>/<session>`.
    pub user_arn: String,
    /// `<role id>:<session>`.
    pub user_id: String,
}

/// Why a request was refused: API Gateway's 403 message for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused(pub &'static str);

pub const MISSING: Refused = Refused("Missing Authentication Token");
pub const UNKNOWN_KEY: Refused = Refused("The security token included in the request is invalid.");
pub const MISMATCH: Refused = Refused(
    "The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method.",
);
pub const EXPIRED: Refused = Refused("Signature expired");
pub const MALFORMED: Refused =
    Refused("Authorization header requires 'Credential', 'Signature' and 'SignedHeaders' parameters.");

/// A request as it arrived: method, path and query exactly as sent, headers (names in
/// any case, repeated names allowed) and the body.
pub struct Signed<'a> {
    pub method: &'a str,
    pub raw_path: &'a str,
    pub raw_query: &'a str,
    pub headers: &'a [(String, String)],
    pub body: &'a [u8],
}

impl Signed<'_> {
    fn header_values(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.header_values(name).into_iter().next()
    }
}

struct Authorization<'a> {
    access_key_id: &'a str,
    date: &'a str,
    region: &'a str,
    service: &'a str,
    signed_headers: Vec<&'a str>,
    signature: &'a str,
}

fn parse(header: &str) -> Result<Authorization<'_>, Refused> {
    let rest = header
        .strip_prefix("AWS4-HMAC-SHA256")
        .ok_or(MISSING)?
        .trim_start();
    let mut credential = None;
    let mut signed = None;
    let mut signature = None;
    for part in rest.split(',') {
        let (name, value) = part.trim().split_once('=').ok_or(MALFORMED)?;
        match name {
            "Credential" => credential = Some(value),
            "SignedHeaders" => signed = Some(value),
            "Signature" => signature = Some(value),
            _ => return Err(MALFORMED),
        }
    }
    let (credential, signed, signature) = match (credential, signed, signature) {
        (Some(c), Some(h), Some(s)) => (c, h, s),
        _ => return Err(MALFORMED),
    };
    let mut scope = credential.split('/');
    let (Some(access_key_id), Some(date), Some(region), Some(service), Some("aws4_request"), None) = (
        scope.next(),
        scope.next(),
        scope.next(),
        scope.next(),
        scope.next(),
        scope.next(),
    ) else {
        return Err(MALFORMED);
    };
    Ok(Authorization {
        access_key_id,
        date,
        region,
        service,
        signed_headers: signed.split(';').collect(),
        signature,
    })
}

/// Verifies `request`'s SigV4 signature against `credentials` at `now`, for `region`.
pub fn verify(
    request: &Signed<'_>,
    credentials: &[Credential],
    region: &str,
    now: DateTime<Utc>,
) -> Result<Identity, Refused> {
    let header = request.header("authorization").ok_or(MISSING)?;
    let auth = parse(header)?;
    let credential = credentials
        .iter()
        .find(|c| c.access_key_id == auth.access_key_id)
        .ok_or(UNKNOWN_KEY)?;
    if auth.service != SERVICE || auth.region != region {
        return Err(Refused(
            "Credential should be scoped to a valid region and service (execute-api).",
        ));
    }
    // Host and x-amz-date must be signed, and the payload hash when it is sent.
    let must_sign = ["host", "x-amz-date"].into_iter().chain(
        request
            .header("x-amz-content-sha256")
            .map(|_| "x-amz-content-sha256"),
    );
    for name in must_sign {
        if !auth.signed_headers.contains(&name) {
            return Err(MISMATCH);
        }
    }
    let amz_date = request.header("x-amz-date").ok_or(MISSING)?;
    let when = NaiveDateTime::parse_from_str(amz_date, "%Y%m%dT%H%M%SZ")
        .map_err(|_| MISMATCH)?
        .and_utc();
    if (now - when).num_seconds().abs() > MAX_SKEW_SECONDS {
        return Err(EXPIRED);
    }
    if !amz_date.starts_with(auth.date) || auth.date.len() != 8 {
        return Err(MISMATCH);
    }
    // The body is always hashed: a payload hash the client sends must be the body's.
    let payload_hash = hex::encode(Sha256::digest(request.body));
    if let Some(sent) = request.header("x-amz-content-sha256")
        && !sent.eq_ignore_ascii_case(&payload_hash)
    {
        return Err(MISMATCH);
    }
    let headers = canonical_headers(request, &auth.signed_headers);
    let query = canonical_query(request.raw_query);
    let scope = format!("{}/{}/{}/aws4_request", auth.date, auth.region, auth.service);
    let key = signing_key(
        &credential.secret_access_key,
        auth.date,
        auth.region,
        auth.service,
    );
    // Signers differ on the path: the AWS SDKs and botocore encode the (already encoded)
    // path once more for every service but S3; curl signs it as sent. The path as sent is
    // accepted only when it has no escapes, where the two cannot be told apart by an
    // attacker: otherwise a path signed as `/a%2Fb` could be replayed as `/a%252Fb`.
    let twice = encode_path(request.raw_path);
    let mut paths = vec![twice.as_str()];
    if !request.raw_path.contains('%') {
        paths.push(request.raw_path);
    }
    let ok = paths.iter().any(|path| {
        let canonical = [
            request.method,
            path,
            &query,
            &headers,
            &auth.signed_headers.join(";"),
            &payload_hash,
        ]
        .join("\n");
        let to_sign = format!(
            "AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{}",
            hex::encode(Sha256::digest(canonical.as_bytes()))
        );
        let expected = hex::encode(hmac(&key, to_sign.as_bytes()));
        constant_time_eq(expected.as_bytes(), auth.signature.as_bytes())
    });
    if !ok {
        return Err(MISMATCH);
    }
    Ok(identity(credential))
}

/// The caller API Gateway reports for a pair: its role, assumed, in a session named
/// `local`.
fn identity(credential: &Credential) -> Identity {
    // arn:<partition>:iam::<account>:role/<path/><name>
    let parts: Vec<&str> = credential.role_arn.splitn(6, ':').collect();
    let partition = parts.get(1).copied().unwrap_or("aws");
    let account = parts.get(4).copied().unwrap_or("000000000000").to_owned();
    let role = credential
        .role_arn
        .rsplit('/')
        .next()
        .unwrap_or("local")
        .to_owned();
    let role_id = format!("AROALOCAL{}", role.to_uppercase().replace('-', ""));
    Identity {
        access_key: credential.access_key_id.clone(),
        user_arn: format!("arn:{partition}:sts::{account}:assumed-role/{role}/local"),
        user_id: format!("{role_id}:local"),
        account_id: account,
    }
}

/// `name:value\n` for each signed header: values trimmed, inner runs of spaces made one,
/// repeated headers joined with commas.
fn canonical_headers(request: &Signed<'_>, signed: &[&str]) -> String {
    let mut out = String::new();
    for name in signed {
        let values: Vec<String> = request
            .header_values(name)
            .iter()
            .map(|v| v.split_whitespace().collect::<Vec<_>>().join(" "))
            .collect();
        out.push_str(name);
        out.push(':');
        out.push_str(&values.join(","));
        out.push('\n');
    }
    out
}

/// The query's pairs, decoded then encoded as SigV4 wants, sorted by name then value.
fn canonical_query(raw: &str) -> String {
    let mut pairs: Vec<(String, String)> = raw
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (encode_bytes(&decode_bytes(k)), encode_bytes(&decode_bytes(v)))
        })
        .collect();
    pairs.sort();
    pairs
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&")
}

fn decode(s: &str) -> String {
    // In a query `+` is a space; signers encode a space as %20.
    percent_encoding::percent_decode_str(&s.replace('+', " "))
        .decode_utf8_lossy()
        .into_owned()
}

/// The bytes a query component stands for (`+` is a space), without reading them as UTF-8:
/// two different byte strings never canonicalise alike.
fn decode_bytes(s: &str) -> Vec<u8> {
    percent_encoding::percent_decode_str(&s.replace('+', " ")).collect()
}

/// RFC 3986 encoding of everything but the unreserved characters.
fn encode(s: &str) -> String {
    encode_bytes(s.as_bytes())
}

fn encode_bytes(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    for &b in bytes {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn encode_path(path: &str) -> String {
    path.split('/').map(encode).collect::<Vec<_>>().join("/")
}

fn hmac(key: &[u8], data: &[u8]) -> Vec<u8> {
    // HMAC takes a key of any length.
    let mut mac = match <Hmac<Sha256> as KeyInit>::new_from_slice(key) {
        Ok(mac) => mac,
        Err(_) => return Vec::new(),
    };
    mac.update(data);
    mac.finalize().into_bytes().to_vec()
}

fn signing_key(secret: &str, date: &str, region: &str, service: &str) -> Vec<u8> {
    let k_date = hmac(format!("AWS4{secret}").as_bytes(), date.as_bytes());
    let k_region = hmac(&k_date, region.as_bytes());
    let k_service = hmac(&k_region, service.as_bytes());
    hmac(&k_service, b"aws4_request")
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The headers of a request as (name, value) pairs, for [`Signed`].
pub fn header_pairs(headers: &axum::http::HeaderMap) -> Vec<(String, String)> {
    headers
        .iter()
        .map(|(n, v)| {
            (
                n.as_str().to_owned(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect()
}

/// Query pairs in the order sent (for tests and events).
pub fn query_pairs(raw: &str) -> BTreeMap<String, Vec<String>> {
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for p in raw.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = p.split_once('=').unwrap_or((p, ""));
        out.entry(decode(k)).or_default().push(decode(v));
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
    use aws_sigv4::sign::v4;
    use aws_smithy_runtime_api::client::identity::Identity as SdkIdentity;

    fn runtime() -> Credential {
        Credential {
            access_key_id: "AKIALOCALRUNTIME".into(),
            secret_access_key: "local-runtime-secret".into(),
            role_arn: "arn:aws:iam::123456789012:role/agent-runtime".into(),
        }
    }

    /// Signs like the AWS SDK does, with its own signer (aws-sigv4).
    fn sdk_signed(
        cred: &Credential,
        method: &str,
        url: &str,
        body: &[u8],
        when: DateTime<Utc>,
    ) -> Vec<(String, String)> {
        let identity: SdkIdentity = aws_credential_types::Credentials::new(
            &cred.access_key_id,
            &cred.secret_access_key,
            None,
            None,
            "local",
        )
        .into();
        let settings = SigningSettings::default();
        let params = v4::SigningParams::builder()
            .identity(&identity)
            .region("us-east-1")
            .name(SERVICE)
            .time(when.into())
            .settings(settings)
            .build()
            .unwrap()
            .into();
        let headers = [("host", "127.0.0.1:3000"), ("content-type", "application/json")];
        let signable =
            SignableRequest::new(method, url, headers.iter().copied(), SignableBody::Bytes(body)).unwrap();
        let (instructions, _) = sign(signable, &params).unwrap().into_parts();
        let mut request = http::Request::builder().method(method).uri(url);
        for (k, v) in headers {
            request = request.header(k, v);
        }
        let mut request = request.body(()).unwrap();
        instructions.apply_to_request_http1x(&mut request);
        request
            .headers()
            .iter()
            .map(|(k, v)| (k.as_str().to_owned(), v.to_str().unwrap().to_owned()))
            .collect()
    }

    fn check(
        method: &str,
        path: &str,
        query: &str,
        headers: &[(String, String)],
        body: &[u8],
        now: DateTime<Utc>,
    ) -> Result<Identity, Refused> {
        let req = Signed {
            method,
            raw_path: path,
            raw_query: query,
            headers,
            body,
        };
        verify(&req, &[runtime()], "us-east-1", now)
    }

    #[test]
    fn the_sdk_signer_s_signature_verifies_and_names_the_role() {
        let now = Utc::now();
        let body = br#"{"request_id":"r1","cost":"1.00"}"#;
        let url = "http://127.0.0.1:3000/v1/orgs/org_demo/usage";
        let headers = sdk_signed(&runtime(), "POST", url, body, now);
        let who = check("POST", "/v1/orgs/org_demo/usage", "", &headers, body, now).unwrap();
        assert_eq!(
            who.user_arn,
            "arn:aws:sts::123456789012:assumed-role/agent-runtime/local"
        );
        assert_eq!(who.account_id, "123456789012");
        // With a query, in another order than signed.
        let url = "http://127.0.0.1:3000/v1/orgs/org_demo/may-i-run?model=a%20b&member=m_ana";
        let headers = sdk_signed(&runtime(), "GET", url, b"", now);
        check(
            "GET",
            "/v1/orgs/org_demo/may-i-run",
            "model=a%20b&member=m_ana",
            &headers,
            b"",
            now,
        )
        .unwrap();
    }

    #[test]
    fn anything_changed_after_signing_is_refused() {
        let now = Utc::now();
        let body = br#"{"request_id":"r1","cost":"1.00"}"#;
        let url = "http://127.0.0.1:3000/v1/orgs/org_demo/usage";
        let headers = sdk_signed(&runtime(), "POST", url, body, now);
        let path = "/v1/orgs/org_demo/usage";
        assert_eq!(
            check(
                "POST",
                path,
                "",
                &headers,
                br#"{"request_id":"r1","cost":"9.00"}"#,
                now
            ),
            Err(MISMATCH),
            "body"
        );
        assert_eq!(
            check("POST", "/v1/orgs/org_other/usage", "", &headers, body, now),
            Err(MISMATCH)
        );
        assert_eq!(check("PUT", path, "", &headers, body, now), Err(MISMATCH));
        assert_eq!(check("POST", path, "x=1", &headers, body, now), Err(MISMATCH));
        let late = now + chrono::Duration::seconds(MAX_SKEW_SECONDS + 1);
        assert_eq!(check("POST", path, "", &headers, body, late), Err(EXPIRED));
        // Signed with another secret for the same key id.
        let mut wrong = runtime();
        wrong.secret_access_key = "guessed".into();
        let forged = sdk_signed(&wrong, "POST", url, body, now);
        assert_eq!(check("POST", path, "", &forged, body, now), Err(MISMATCH));
        // A key id nobody has.
        let mut stranger = runtime();
        stranger.access_key_id = "AKIASTRANGER".into();
        let theirs = sdk_signed(&stranger, "POST", url, body, now);
        assert_eq!(check("POST", path, "", &theirs, body, now), Err(UNKNOWN_KEY));
        assert_eq!(check("POST", path, "", &[], body, now), Err(MISSING));
        let garbage = vec![("authorization".to_owned(), "AWS4-HMAC-SHA256 nonsense".to_owned())];
        assert_eq!(check("POST", path, "", &garbage, body, now), Err(MALFORMED));
        let bearer = vec![("authorization".to_owned(), "Bearer abc".to_owned())];
        assert_eq!(check("POST", path, "", &bearer, body, now), Err(MISSING));
    }

    #[test]
    fn a_signed_request_cannot_take_another_body_or_a_re_encoded_path() {
        let now = Utc::now();
        let body = br#"{"effective_from":"2027-01-01","input":"3","output":"15"}"#;
        let url = "http://127.0.0.1:3000/v1/rates/claude-sonnet";
        let mut headers = sdk_signed(&runtime(), "PUT", url, body, now);
        let path = "/v1/rates/claude-sonnet";
        check("PUT", path, "", &headers, body, now).unwrap();
        // The original body's hash, sent beside another body.
        headers.push(("x-amz-content-sha256".into(), hex::encode(Sha256::digest(body))));
        let other = br#"{"effective_from":"2027-01-01","input":"0","output":"0"}"#;
        assert_eq!(check("PUT", path, "", &headers, other, now), Err(MISMATCH));
        // Signed for `/a%2Fb` (the SDK encodes it once more), replayed as `/a%252Fb`.
        let url = "http://127.0.0.1:3000/v1/rates/a%2Fb";
        let headers = sdk_signed(&runtime(), "PUT", url, body, now);
        check("PUT", "/v1/rates/a%2Fb", "", &headers, body, now).unwrap();
        assert_eq!(
            check("PUT", "/v1/rates/a%252Fb", "", &headers, body, now),
            Err(MISMATCH)
        );
    }

    #[test]
    fn the_canonical_query_is_sorted_and_encoded_as_sigv4_wants() {
        assert_ne!(canonical_query("a=%FF"), canonical_query("a=%FE"));
        assert_eq!(canonical_query("b=2&a=x+y&a=%41"), "a=A&a=x%20y&b=2");
        assert_eq!(canonical_query(""), "");
        assert_eq!(encode_path("/v1/orgs/a%2Fb"), "/v1/orgs/a%252Fb");
    }
}
