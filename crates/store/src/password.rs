//! Password hashes: argon2id PHC strings; plain passwords never reach the database.

use std::fmt;

use argon2::password_hash::{PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;

use crate::error::{Result, StoreError};

/// Longest password accepted, in bytes: argon2 cost does not depend on it, but an
/// attacker-sized input should not be hashed.
const MAX_PASSWORD_BYTES: usize = 1024;

/// An argon2 password hash in PHC string format (`$argon2id$v=19$m=...`).
///
/// Its `Debug` output hides the hash, so it can sit in logged structs.
#[derive(Clone, PartialEq, Eq)]
pub struct PasswordHash(String);

impl PasswordHash {
    /// Hashes `password` with argon2id and a random salt. CPU-heavy (tens of
    /// milliseconds): call it from `spawn_blocking` in a server.
    pub fn hash(password: &str) -> Result<PasswordHash> {
        if password.is_empty() {
            return Err(StoreError::invalid("password", "must not be empty"));
        }
        if password.len() > MAX_PASSWORD_BYTES {
            return Err(StoreError::invalid(
                "password",
                format!("longer than {MAX_PASSWORD_BYTES} bytes"),
            ));
        }
        let salt = SaltString::generate(&mut rand::rngs::OsRng);
        let hash = Argon2::default()
            .hash_password(password.as_bytes(), &salt)
            .map_err(|e| StoreError::Password(e.to_string()))?;
        Ok(PasswordHash(hash.to_string()))
    }

    /// Accepts an existing argon2 PHC string (as stored, or produced elsewhere).
    pub fn from_phc(phc: &str) -> Result<PasswordHash> {
        let parsed = argon2::PasswordHash::new(phc)
            .map_err(|e| StoreError::invalid("password_hash", e.to_string()))?;
        if !parsed.algorithm.as_str().starts_with("argon2") {
            return Err(StoreError::invalid(
                "password_hash",
                format!("algorithm {} is not argon2", parsed.algorithm),
            ));
        }
        Ok(PasswordHash(phc.to_owned()))
    }

    /// Whether `password` is the one hashed. CPU-heavy like [`PasswordHash::hash`].
    pub fn verify(&self, password: &str) -> bool {
        if password.len() > MAX_PASSWORD_BYTES {
            return false;
        }
        match argon2::PasswordHash::new(&self.0) {
            Ok(parsed) => Argon2::default()
                .verify_password(password.as_bytes(), &parsed)
                .is_ok(),
            Err(_) => false,
        }
    }

    /// The PHC string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for PasswordHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PasswordHash(***)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hash_verifies_its_password_only() {
        let hash = PasswordHash::hash("correct horse").unwrap();
        assert!(hash.as_str().starts_with("$argon2id$"));
        assert!(hash.verify("correct horse"));
        assert!(!hash.verify("correct horse "));
        let again = PasswordHash::from_phc(hash.as_str()).unwrap();
        assert!(again.verify("correct horse"));
        assert_eq!(format!("{hash:?}"), "PasswordHash(***)");
    }

    #[test]
    fn non_argon2_or_garbage_hashes_are_refused() {
        assert!(matches!(
            PasswordHash::from_phc("plaintext"),
            Err(StoreError::Invalid {
                field: "password_hash",
                ..
            })
        ));
        assert!(matches!(
            PasswordHash::hash(""),
            Err(StoreError::Invalid {
                field: "password",
                ..
            })
        ));
    }
}
