//! Secrets the sandboxes and the demo make up when they start: app secrets, shop tokens, ciphers,
//! shared keys. They come from the thread-local CSPRNG (seeded by the operating system), never
//! from a literal or the data seed, so no binary holds one and no run can predict another's.

use rand::Rng;

const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";

/// `prefix` followed by `len` random alphanumeric characters (about 5.95 bits each).
pub fn random_token(prefix: &str, len: usize) -> String {
    let mut rng = rand::rng();
    let mut token = String::with_capacity(prefix.len() + len);
    token.push_str(prefix);
    for _ in 0..len {
        token.push(char::from(ALPHABET[rng.random_range(0..ALPHABET.len())]));
    }
    token
}

/// `bytes` random bytes as lowercase hex: the shape of a 256-bit key in a secret file.
pub fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    rand::rng().fill(&mut buf[..]);
    hex::encode(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_have_the_prefix_the_length_and_differ() {
        let a = random_token("TTP_", 40);
        let b = random_token("TTP_", 40);
        assert!(a.starts_with("TTP_"));
        assert_eq!(a.len(), 44);
        assert!(a[4..].bytes().all(|c| c.is_ascii_alphanumeric()));
        assert_ne!(a, b);
    }

    #[test]
    fn hex_keys_have_the_length_and_differ() {
        let a = random_hex(32);
        assert_eq!(a.len(), 64);
        assert!(a.bytes().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, random_hex(32));
    }
}
