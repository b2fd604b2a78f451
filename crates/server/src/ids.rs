//! Fresh identifiers and secrets, all from the operating system's CSPRNG.

use rand::RngCore;
use rand::rngs::OsRng;

/// Bytes in an invite token (256 bits: unguessable, so the server may say
/// why a token was refused without helping anyone guess one).
pub const INVITE_TOKEN_LEN: usize = 32;

/// A new invite token. Shown once to the operator; only its hash is stored.
pub fn new_invite_token() -> [u8; INVITE_TOKEN_LEN] {
    let mut token = [0u8; INVITE_TOKEN_LEN];
    OsRng.fill_bytes(&mut token);
    token
}

/// A new device id: `dev_` and 128 random bits in base64url.
pub fn new_device_id() -> String {
    let mut bytes = [0u8; 16];
    OsRng.fill_bytes(&mut bytes);
    format!("dev_{}", crate::auth::encode(&bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_signable_and_distinct() {
        let a = new_device_id();
        let b = new_device_id();
        assert_ne!(a, b);
        crate::auth::check_device_id(&a).expect("a device id can be signed");
        assert_eq!(a.len(), 4 + 22);
        assert_ne!(new_invite_token(), new_invite_token());
    }
}
