//! SHA-512 crypt(3) (`$6$<salt>$<hash>`, glibc's default rounds) of the rescue password:
//! the conductor hashes the password it is given before it is stored or sent, as Ironic
//! does; the agent hashes one sent in clear (`hashed: false`) before writing
//! `/etc/shadow`. Pure computation: the caller brings the random salt.

/// The crypt(3) salt alphabet.
const SALT_CHARS: &[u8; 64] = b"./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// `$6$<16 salt characters>$<86 characters>` of `password`; `salt` is 16 random bytes.
pub fn sha512_crypt(password: &str, salt: &[u8; 16]) -> String {
    let salt: String = salt
        .iter()
        .map(|b| SALT_CHARS[usize::from(*b) % 64] as char)
        .collect();
    let params = sha_crypt::Sha512Params::default();
    // Only a salt longer than 16 characters or out-of-range rounds fail, and neither can
    // happen here.
    let hash = sha_crypt::sha512_crypt_b64(password.as_bytes(), salt.as_bytes(), &params)
        .unwrap_or_default();
    format!("$6${salt}${hash}")
}

/// Whether `s` looks like a crypt(3) hash that is safe to put in a shadow file: `$id$…`
/// of the crypt alphabet (and `=`/`,` of `rounds=`), no `:` or line break.
pub fn is_crypt_hash(s: &str) -> bool {
    s.len() > 3
        && s.len() <= 512
        && s.starts_with('$')
        && s.bytes()
            .all(|b| SALT_CHARS.contains(&b) || matches!(b, b'$' | b'=' | b','))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_answer_of_glibc() {
        // glibc's crypt("Hello world!", "$6$saltstring") (Drepper's SHA-crypt test vector).
        let params = sha_crypt::Sha512Params::default();
        let h = sha_crypt::sha512_crypt_b64(b"Hello world!", b"saltstring", &params).unwrap();
        assert_eq!(
            h,
            "svn8UoSVapNtMuq1ukKS4tPQd8iKwSMHWjl/O817G3uBnIFNjnQJuesI68u4OTLiBFdcbYEdFCoEOfaS35inz1"
        );
    }

    #[test]
    fn hashes_are_salted_crypt_strings() {
        let a = sha512_crypt("secret", &[1; 16]);
        let b = sha512_crypt("secret", &[2; 16]);
        assert!(a.starts_with("$6$") && a.len() == 3 + 16 + 1 + 86, "{a}");
        assert_ne!(a, b);
        assert!(!a.contains("secret"));
        assert!(is_crypt_hash(&a));
        assert!(!is_crypt_hash("plain"));
        assert!(!is_crypt_hash("$6$x:y"));
        assert!(!is_crypt_hash("$6$x\nroot::0:0"));
    }
}
