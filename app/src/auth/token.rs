//! Access tokens (short-lived JWTs) and opaque random tokens (refresh, reset, cart) that the
//! database stores only as SHA-256 hashes.

use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use rand::RngCore;
use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;
use uuid::Uuid;

use super::Role;
use crate::config::AuthConfig;

const ISSUER: &str = "shop";
const LEEWAY_S: u64 = 5;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claims {
    pub sub: Uuid,
    pub role: Role,
    pub iat: i64,
    pub exp: i64,
    pub iss: String,
    /// This token's id, which logout puts on the denylist. Optional when decoding: tokens
    /// signed before the claim existed stay valid until they expire (minutes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jti: Option<Uuid>,
    /// The session (refresh token family) the token was issued for; revoking the family
    /// revokes its access tokens too.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sid: Option<Uuid>,
}

pub struct JwtKeys {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    pub access_ttl_s: u64,
    /// Seconds a token is still accepted after `exp` (clock skew between replicas).
    pub leeway_s: u64,
}

impl JwtKeys {
    pub fn new(config: &AuthConfig) -> Self {
        let secret = config.jwt_secret.expose_secret().as_bytes();
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_issuer(&[ISSUER]);
        validation.leeway = LEEWAY_S;
        Self {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            validation,
            access_ttl_s: config.access_ttl_s,
            leeway_s: LEEWAY_S,
        }
    }

    /// An access token outside any session (tools, tests).
    pub fn issue(&self, user_id: Uuid, role: Role) -> String {
        self.issue_for(user_id, role, None)
    }

    /// An access token of the session `sid` (a refresh token family).
    pub fn issue_for(&self, user_id: Uuid, role: Role, sid: Option<Uuid>) -> String {
        let now = OffsetDateTime::now_utc().unix_timestamp();
        let claims = Claims {
            sub: user_id,
            role,
            iat: now,
            exp: now + self.access_ttl_s as i64,
            iss: ISSUER.into(),
            jti: Some(Uuid::now_v7()),
            sid,
        };
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .expect("HS256 signing cannot fail")
    }

    pub fn verify(&self, token: &str) -> Option<Claims> {
        jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation)
            .ok()
            .map(|data| data.claims)
    }
}

/// A fresh random token (256 bits, URL-safe) and the hash to store for it.
pub fn opaque_token() -> (String, Vec<u8>) {
    let mut bytes = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut bytes);
    let token = URL_SAFE_NO_PAD.encode(bytes);
    let hash = hash_token(&token);
    (token, hash)
}

pub fn hash_token(token: &str) -> Vec<u8> {
    Sha256::digest(token.as_bytes()).to_vec()
}
