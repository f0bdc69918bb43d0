//! Password hashes: salted argon2id in PHC string form
//! (`$argon2id$v=19$m=19456,t=2,p=1$SALT$HASH`), the crate's default
//! parameters (OWASP's minimum for argon2id: 19 MiB, 2 passes), which cost
//! a login some 10 to 50 ms of one core. Verifying reads the parameters from
//! the stored string, so hashes made with other parameters (a password file
//! from elsewhere) still verify.

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;

#[derive(Debug, thiserror::Error)]
pub enum HashError {
    #[error("not an argon2 PHC string: {0}")]
    NotPhc(String),
    #[error("hashing failed: {0}")]
    Hashing(String),
}

/// A new salted hash of `password`.
pub fn hash(password: &[u8]) -> Result<String, HashError> {
    let salt_bytes: [u8; 16] = rand::random();
    let salt =
        SaltString::encode_b64(&salt_bytes).map_err(|e| HashError::Hashing(e.to_string()))?;
    Argon2::default()
        .hash_password(password, &salt)
        .map(|h| h.to_string())
        .map_err(|e| HashError::Hashing(e.to_string()))
}

/// Checks that `phc` is an argon2 PHC string this build can verify.
pub fn check_phc(phc: &str) -> Result<(), HashError> {
    let h = PasswordHash::new(phc).map_err(|e| HashError::NotPhc(e.to_string()))?;
    if !h.algorithm.as_str().starts_with("argon2") || h.hash.is_none() {
        return Err(HashError::NotPhc(format!(
            "algorithm `{}` without a hash",
            h.algorithm
        )));
    }
    Ok(())
}

/// Does `password` match the stored hash `phc`? A string that is not a
/// valid hash matches nothing.
pub fn verify(phc: &str, password: &[u8]) -> bool {
    match PasswordHash::new(phc) {
        Ok(h) => Argon2::default().verify_password(password, &h).is_ok(),
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hash_verifies_its_password_only() {
        let h = hash(b"s3cret").unwrap();
        assert!(h.starts_with("$argon2id$"), "{h}");
        assert!(verify(&h, b"s3cret"));
        assert!(!verify(&h, b"s3cret!"));
        check_phc(&h).unwrap();
    }

    #[test]
    fn the_same_password_hashes_differently_each_time() {
        assert_ne!(hash(b"pw").unwrap(), hash(b"pw").unwrap());
    }

    #[test]
    fn a_string_that_is_not_a_hash_matches_nothing_and_is_refused() {
        assert!(!verify("plaintext", b"plaintext"));
        assert!(check_phc("plaintext").is_err());
        assert!(check_phc("$5$rounds=5000$abc$def").is_err());
    }
}
