//! Password hashing with Argon2id. Hashing is CPU-bound, so it runs off the async threads.

use argon2::{
    password_hash::{rand_core::OsRng, PasswordHash, PasswordHasher, PasswordVerifier, SaltString},
    Algorithm, Argon2, Params, Version,
};

use crate::config::Argon2Config;

fn hasher(config: &Argon2Config) -> Argon2<'static> {
    let params = Params::new(
        config.memory_kib,
        config.iterations,
        config.parallelism,
        None,
    )
    .expect("argon2 parameters are checked at startup");
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

pub async fn hash(config: &Argon2Config, password: String) -> anyhow::Result<String> {
    let config = config.clone();
    tokio::task::spawn_blocking(move || {
        let salt = SaltString::generate(&mut OsRng);
        hasher(&config)
            .hash_password(password.as_bytes(), &salt)
            .map(|h| h.to_string())
            .map_err(|e| anyhow::anyhow!("hashing password: {e}"))
    })
    .await?
}

/// Verifies against a stored hash; with no stored hash (unknown user) it still does the work,
/// so response times do not reveal which emails are registered.
pub async fn verify(
    config: &Argon2Config,
    password: String,
    stored: Option<String>,
) -> anyhow::Result<bool> {
    let config = config.clone();
    tokio::task::spawn_blocking(move || {
        let real = stored.is_some();
        let dummy;
        let hash = match &stored {
            Some(hash) => hash.as_str(),
            None => {
                dummy = hasher(&config)
                    .hash_password(b"not a password", &SaltString::generate(&mut OsRng))
                    .map(|h| h.to_string())
                    .unwrap_or_default();
                &dummy
            }
        };
        let parsed = PasswordHash::new(hash).map_err(|e| anyhow::anyhow!("stored hash: {e}"))?;
        // The parameters are read from the stored hash, so old hashes verify after a cost change.
        let ok = Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok();
        Ok(ok && real)
    })
    .await?
}
