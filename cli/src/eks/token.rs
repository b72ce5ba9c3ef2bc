//! The bearer token EKS accepts: a presigned STS `GetCallerIdentity` URL, the way
//! `aws eks get-token` and aws-iam-authenticator make it, without the aws CLI.
//!
//! The API server's authenticator sends the URL to STS with the same `x-k8s-aws-id`
//! header; STS answers with the caller's ARN, which EKS maps to a Kubernetes identity.
//! The URL is signed (SigV4, query string) for 60 s and EKS treats the token as valid for
//! 15 minutes from the signing time.

use std::time::{Duration, SystemTime};

use aws_credential_types::Credentials;
use aws_sigv4::http_request::{
    sign, SignableBody, SignableRequest, SignatureLocation, SigningSettings,
};
use aws_sigv4::sign::v4;
use aws_smithy_runtime_api::client::identity::Identity;
use base64::Engine;

use super::EksError;

/// What every EKS token starts with.
pub const TOKEN_PREFIX: &str = "k8s-aws-v1.";
/// The header that binds a token to one cluster.
pub const CLUSTER_HEADER: &str = "x-k8s-aws-id";
/// How long EKS accepts a token after it was signed.
pub const TOKEN_LIFETIME: Duration = Duration::from_secs(15 * 60);
/// How long the presigned URL itself is valid (what aws-iam-authenticator uses).
const PRESIGN_EXPIRY: Duration = Duration::from_secs(60);

/// A token for `cluster`, signed with `credentials` for STS at `sts_url`
/// (`https://sts.<region>.amazonaws.com/`, or an emulator's endpoint).
pub fn token(
    credentials: Credentials,
    region: &str,
    sts_url: &str,
    cluster: &str,
    now: SystemTime,
) -> Result<String, EksError> {
    let url = presigned_url(credentials, region, sts_url, cluster, now)?;
    Ok(format!(
        "{TOKEN_PREFIX}{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(url)
    ))
}

/// The presigned `GetCallerIdentity` URL a token carries.
pub fn presigned_url(
    credentials: Credentials,
    region: &str,
    sts_url: &str,
    cluster: &str,
    now: SystemTime,
) -> Result<String, EksError> {
    let base = format!(
        "{}/?Action=GetCallerIdentity&Version=2011-06-15",
        sts_url.trim_end_matches('/')
    );
    let identity: Identity = credentials.into();
    let mut settings = SigningSettings::default();
    settings.signature_location = SignatureLocation::QueryParams;
    settings.expires_in = Some(PRESIGN_EXPIRY);
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(region)
        .name("sts")
        .time(now)
        .settings(settings)
        .build()
        .map_err(|e| EksError::Sign(e.to_string()))?
        .into();
    let headers = [(CLUSTER_HEADER, cluster)];
    let request = SignableRequest::new(
        "GET",
        base.as_str(),
        headers.iter().copied(),
        SignableBody::Bytes(&[]),
    )
    .map_err(|e| EksError::Sign(e.to_string()))?;
    let (instructions, _signature) = sign(request, &params)
        .map_err(|e| EksError::Sign(e.to_string()))?
        .into_parts();
    let mut url = base;
    for (name, value) in instructions.params() {
        url.push('&');
        url.push_str(name);
        url.push('=');
        url.push_str(&encode_query_value(value));
    }
    Ok(url)
}

/// SigV4's query encoding: everything but unreserved characters, percent-encoded.
fn encode_query_value(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for byte in value.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(byte as char)
            }
            _ => out.push_str(&format!("%{byte:02X}")),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The URL a token carries.
    fn decode(token: &str) -> Result<String, EksError> {
        let encoded = token
            .strip_prefix(TOKEN_PREFIX)
            .ok_or_else(|| EksError::Sign(format!("a token starts with {TOKEN_PREFIX}")))?;
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(encoded)
            .map_err(|e| EksError::Sign(e.to_string()))?;
        String::from_utf8(bytes).map_err(|e| EksError::Sign(e.to_string()))
    }

    fn credentials() -> Credentials {
        Credentials::new("AKIDEXAMPLE", "secret", None, None, "test")
    }

    #[test]
    fn a_token_is_a_presigned_get_caller_identity_bound_to_the_cluster() {
        let at = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let token = token(
            credentials(),
            "eu-west-1",
            "https://sts.eu-west-1.amazonaws.com/",
            "shop-staging",
            at,
        )
        .unwrap();
        assert!(token.starts_with(TOKEN_PREFIX));
        assert!(!token.contains('='), "no padding: {token}");
        let url = decode(&token).unwrap();
        assert!(
            url.starts_with(
                "https://sts.eu-west-1.amazonaws.com/?Action=GetCallerIdentity&Version=2011-06-15&"
            ),
            "{url}"
        );
        for part in [
            "X-Amz-Algorithm=AWS4-HMAC-SHA256",
            "X-Amz-Credential=AKIDEXAMPLE%2F20270115%2Feu-west-1%2Fsts%2Faws4_request",
            "X-Amz-Date=20270115T080000Z",
            "X-Amz-Expires=60",
            "X-Amz-SignedHeaders=host%3Bx-k8s-aws-id",
            "X-Amz-Signature=",
        ] {
            assert!(url.contains(part), "{part} missing in {url}");
        }
        // The same inputs sign the same; another cluster signs differently.
        let again = super::token(
            credentials(),
            "eu-west-1",
            "https://sts.eu-west-1.amazonaws.com",
            "shop-staging",
            at,
        )
        .unwrap();
        assert_eq!(token, again);
        let other = super::token(
            credentials(),
            "eu-west-1",
            "https://sts.eu-west-1.amazonaws.com",
            "shop-production",
            at,
        )
        .unwrap();
        assert_ne!(token, other);
    }

    #[test]
    fn a_session_token_is_signed_into_the_url() {
        let creds = Credentials::new("AKID", "secret", Some("a/session+token".into()), None, "t");
        let url = presigned_url(
            creds,
            "us-east-1",
            "http://127.0.0.1:5000",
            "c",
            SystemTime::now(),
        )
        .unwrap();
        assert!(
            url.contains("X-Amz-Security-Token=a%2Fsession%2Btoken"),
            "{url}"
        );
    }
}
