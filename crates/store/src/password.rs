//! Password hashes: argon2id PHC strings; plain passwords never reach the database.
//!
//! Hashing and checking fill m_cost KiB of argon2 memory (19 MiB with the default
//! parameters). [`HashMemory`] lets a caller keep that memory and reuse it for every
//! hash, instead of allocating it anew each time: a server that allocates it per
//! login on many threads leaves it resident in the allocator's per-thread arenas.

use std::fmt;

use argon2::password_hash::{Output, ParamsString, SaltString};
use argon2::{Algorithm, Argon2, Block, Params, Version};

use crate::error::{Result, StoreError};

/// Longest password accepted, in bytes: argon2 cost does not depend on it, but an
/// attacker-sized input should not be hashed.
const MAX_PASSWORD_BYTES: usize = 1024;

/// Most argon2 memory a stored hash may ask for, in KiB (256 MiB; the default is
/// 19 MiB). A hash edited by hand to ask for more is refused rather than allocated.
const MAX_M_COST_KIB: u32 = 256 * 1024;

/// Argon2 working memory, to be reused from one hash to the next.
///
/// Sized for the default parameters; a stored hash asking for more memory (made
/// elsewhere with other parameters) gets a temporary buffer for that one check.
pub struct HashMemory {
    blocks: Vec<Block>,
}

impl HashMemory {
    /// Allocates the memory of one hash with the default parameters (19 MiB).
    pub fn new() -> HashMemory {
        HashMemory {
            blocks: vec![Block::default(); Params::DEFAULT.block_count()],
        }
    }

    /// Runs argon2 with `params` into `out`, in this memory when it is large enough.
    fn hash_into(
        &mut self,
        hasher: &Argon2<'_>,
        params: &Params,
        password: &[u8],
        salt: &[u8],
        out: &mut [u8],
    ) -> std::result::Result<(), argon2::Error> {
        let needed = params.block_count();
        if needed <= self.blocks.len() {
            hasher.hash_password_into_with_memory(password, salt, out, &mut self.blocks[..needed])
        } else {
            let mut blocks = vec![Block::default(); needed];
            hasher.hash_password_into_with_memory(password, salt, out, &mut blocks)
        }
    }
}

impl Default for HashMemory {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for HashMemory {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "HashMemory({} KiB)", self.blocks.len())
    }
}

/// An argon2 password hash in PHC string format (`$argon2id$v=19$m=...`).
///
/// Its `Debug` output hides the hash, so it can sit in logged structs.
#[derive(Clone, PartialEq, Eq)]
pub struct PasswordHash(String);

fn check_length(password: &str) -> Result<()> {
    if password.is_empty() {
        return Err(StoreError::invalid("password", "must not be empty"));
    }
    if password.len() > MAX_PASSWORD_BYTES {
        return Err(StoreError::invalid(
            "password",
            format!("longer than {MAX_PASSWORD_BYTES} bytes"),
        ));
    }
    Ok(())
}

fn hashing_failed(error: impl fmt::Display) -> StoreError {
    StoreError::Password(error.to_string())
}

impl PasswordHash {
    /// Hashes `password` with argon2id and a random salt. CPU-heavy (tens of
    /// milliseconds) and allocates 19 MiB: a server should use
    /// [`PasswordHash::hash_in`] on a few threads that keep their [`HashMemory`].
    pub fn hash(password: &str) -> Result<PasswordHash> {
        Self::hash_in(password, &mut HashMemory::new())
    }

    /// Hashes `password` with argon2id (default parameters) and a random salt, in
    /// `memory`. The PHC string is the same as argon2's `hash_password` gives.
    pub fn hash_in(password: &str, memory: &mut HashMemory) -> Result<PasswordHash> {
        check_length(password)?;
        let salt = SaltString::generate(&mut rand::rngs::OsRng);
        let mut salt_bytes = [0u8; 64];
        let salt_bytes = salt.decode_b64(&mut salt_bytes).map_err(hashing_failed)?;
        let params = Params::DEFAULT;
        let hasher = Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone());
        let output = Output::init_with(Params::DEFAULT_OUTPUT_LEN, |out| {
            memory
                .hash_into(&hasher, &params, password.as_bytes(), salt_bytes, out)
                .map_err(|_| argon2::password_hash::Error::Crypto)
        })
        .map_err(hashing_failed)?;
        let phc = argon2::password_hash::PasswordHash {
            algorithm: Algorithm::Argon2id.ident(),
            version: Some(Version::V0x13.into()),
            params: ParamsString::try_from(&params).map_err(hashing_failed)?,
            salt: Some(salt.as_salt()),
            hash: Some(output),
        };
        Ok(PasswordHash(phc.to_string()))
    }

    /// Accepts an existing argon2 PHC string (as stored, or produced elsewhere).
    pub fn from_phc(phc: &str) -> Result<PasswordHash> {
        let parsed = argon2::PasswordHash::new(phc)
            .map_err(|e| StoreError::invalid("password_hash", e.to_string()))?;
        Algorithm::try_from(parsed.algorithm).map_err(|_| {
            StoreError::invalid(
                "password_hash",
                format!("algorithm {} is not argon2", parsed.algorithm),
            )
        })?;
        let params = Params::try_from(&parsed)
            .map_err(|e| StoreError::invalid("password_hash", e.to_string()))?;
        if params.m_cost() > MAX_M_COST_KIB {
            return Err(StoreError::invalid(
                "password_hash",
                format!(
                    "asks for {} KiB of memory, more than {MAX_M_COST_KIB}",
                    params.m_cost()
                ),
            ));
        }
        if parsed.salt.is_none() || parsed.hash.is_none() {
            return Err(StoreError::invalid(
                "password_hash",
                "has no salt or no hash",
            ));
        }
        Ok(PasswordHash(phc.to_owned()))
    }

    /// Whether `password` is the one hashed. CPU-heavy and allocating like
    /// [`PasswordHash::hash`]; see [`PasswordHash::verify_in`].
    pub fn verify(&self, password: &str) -> bool {
        self.verify_in(password, &mut HashMemory::new())
    }

    /// Whether `password` is the one hashed, computed in `memory`. The comparison
    /// takes the same time wherever the outputs differ.
    pub fn verify_in(&self, password: &str, memory: &mut HashMemory) -> bool {
        if password.len() > MAX_PASSWORD_BYTES {
            return false;
        }
        let Ok(parsed) = argon2::PasswordHash::new(&self.0) else {
            return false;
        };
        let (Some(salt), Some(expected)) = (parsed.salt, parsed.hash) else {
            return false;
        };
        let Ok(algorithm) = Algorithm::try_from(parsed.algorithm) else {
            return false;
        };
        let version = match parsed.version.map(Version::try_from) {
            None => Version::default(),
            Some(Ok(version)) => version,
            Some(Err(_)) => return false,
        };
        let Ok(params) = Params::try_from(&parsed) else {
            return false;
        };
        if params.m_cost() > MAX_M_COST_KIB {
            return false;
        }
        let mut salt_bytes = [0u8; 64];
        let Ok(salt_bytes) = salt.decode_b64(&mut salt_bytes) else {
            return false;
        };
        let hasher = Argon2::new(algorithm, version, params.clone());
        let computed = Output::init_with(expected.len(), |out| {
            memory
                .hash_into(&hasher, &params, password.as_bytes(), salt_bytes, out)
                .map_err(|_| argon2::password_hash::Error::Crypto)
        });
        // `Output`'s equality is constant-time.
        computed.is_ok_and(|computed| computed == expected)
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
    use argon2::password_hash::{PasswordHasher, PasswordVerifier};

    /// Made by the code before [`HashMemory`] (`Argon2::default().hash_password`), as
    /// stored in databases of that time.
    const STORED_BEFORE: &str =
        "$argon2id$v=19$m=19456,t=2,p=1$rZjYPJpBpNh06yET30BFGw$MpV/SYpnT9VCE6lBGX1Pu42oXdaAks5pgtGTRzMd+/A";
    /// The same password hashed elsewhere with more memory, more passes and two lanes.
    const STORED_ELSEWHERE: &str =
        "$argon2id$v=19$m=32768,t=3,p=2$rZjYPJpBpNh06yET30BFGw$3/mnR38STHCVCSC2vhyNhzfdFjiv010xERcU1UQ6jzQ";

    #[test]
    fn a_hash_verifies_its_password_only() {
        let hash = PasswordHash::hash("correct horse").unwrap();
        assert!(hash.as_str().starts_with("$argon2id$v=19$m=19456,t=2,p=1$"));
        assert!(hash.verify("correct horse"));
        assert!(!hash.verify("correct horse "));
        let again = PasswordHash::from_phc(hash.as_str()).unwrap();
        assert!(again.verify("correct horse"));
        assert_eq!(format!("{hash:?}"), "PasswordHash(***)");
    }

    #[test]
    fn hashes_stored_before_or_made_elsewhere_still_verify() {
        let mut memory = HashMemory::new();
        for phc in [STORED_BEFORE, STORED_ELSEWHERE] {
            let hash = PasswordHash::from_phc(phc).unwrap();
            assert!(hash.verify_in("rappel-du-matin", &mut memory), "{phc}");
            assert!(!hash.verify_in("rappel-du-soir", &mut memory), "{phc}");
        }
        // Less memory than the default, and argon2i.
        let salt = SaltString::generate(&mut rand::rngs::OsRng);
        let small = Argon2::new(
            Algorithm::Argon2i,
            Version::V0x13,
            Params::new(4096, 1, 1, None).unwrap(),
        )
        .hash_password(b"rappel-du-matin", &salt)
        .unwrap()
        .to_string();
        let hash = PasswordHash::from_phc(&small).unwrap();
        assert!(hash.verify_in("rappel-du-matin", &mut memory));
        assert!(!hash.verify_in("rappel-du-soir", &mut memory));
    }

    #[test]
    fn reused_memory_gives_the_same_answers_as_argon2_itself() {
        let mut memory = HashMemory::new();
        let first = PasswordHash::hash_in("premier mot de passe", &mut memory).unwrap();
        let second = PasswordHash::hash_in("second mot de passe", &mut memory).unwrap();
        assert_ne!(first, second);
        for _ in 0..2 {
            assert!(first.verify_in("premier mot de passe", &mut memory));
            assert!(!first.verify_in("second mot de passe", &mut memory));
            assert!(second.verify_in("second mot de passe", &mut memory));
        }
        // argon2's own verifier accepts what we wrote, so the format is unchanged.
        let parsed = argon2::PasswordHash::new(first.as_str()).unwrap();
        assert!(Argon2::default()
            .verify_password(b"premier mot de passe", &parsed)
            .is_ok());
        assert!(Argon2::default()
            .verify_password(b"second mot de passe", &parsed)
            .is_err());
    }

    #[test]
    fn non_argon2_garbage_or_greedy_hashes_are_refused() {
        for phc in [
            "plaintext",
            "$pbkdf2-sha256$i=1000$c29tZXNhbHQ$aGFzaA",
            "$argon2id$v=19$m=4194304,t=2,p=1$rZjYPJpBpNh06yET30BFGw$MpV/SYpnT9VCE6lBGX1Pu42oXdaAks5pgtGTRzMd+/A",
            "$argon2id$v=19$m=19456,t=2,p=1$rZjYPJpBpNh06yET30BFGw",
        ] {
            assert!(
                matches!(
                    PasswordHash::from_phc(phc),
                    Err(StoreError::Invalid {
                        field: "password_hash",
                        ..
                    })
                ),
                "{phc}"
            );
        }
        assert!(matches!(
            PasswordHash::hash(""),
            Err(StoreError::Invalid {
                field: "password",
                ..
            })
        ));
        let long = "x".repeat(MAX_PASSWORD_BYTES + 1);
        assert!(matches!(
            PasswordHash::hash(&long),
            Err(StoreError::Invalid {
                field: "password",
                ..
            })
        ));
        assert!(!PasswordHash::from_phc(STORED_BEFORE).unwrap().verify(&long));
    }
}
