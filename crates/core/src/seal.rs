//! Sealing a fine-tuned adapter for delivery: the adapter is encrypted
//! under a fresh content key (ChaCha20-Poly1305), and at settlement the
//! content key is encrypted to the key that signed the job's order (ECIES:
//! an ephemeral secp256k1 key, ECDH, ChaCha20-Poly1305 bound to the job id).

use alloy_primitives::B256;
use chacha20poly1305::{
    ChaCha20Poly1305, Key, KeyInit, Nonce,
    aead::{Aead, Payload},
};
use secp256k1::{PublicKey, SECP256K1, ecdh::SharedSecret};

use crate::{Signature, SignatureError, SigningKey};

/// Compressed ephemeral public key, then the key and its 16-byte tag.
pub const SEALED_KEY_LEN: usize = 33 + 32 + 16;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SealError {
    #[error("the data does not decrypt with this key: wrong key, or the bytes were changed")]
    Decrypt,
    #[error("a sealed content key is {SEALED_KEY_LEN} bytes, got {0}")]
    SealedKeyLength(usize),
    #[error("the sealed content key's ephemeral public key is not a curve point")]
    EphemeralKey,
    #[error("the order signature names no public key to seal to: {0}")]
    Signature(#[from] SignatureError),
}

/// The key one adapter is encrypted under (used for that adapter only).
#[derive(Clone, PartialEq, Eq)]
pub struct ContentKey([u8; 32]);

impl std::fmt::Debug for ContentKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ContentKey(..)")
    }
}

impl ContentKey {
    pub fn random() -> Self {
        Self(rand::random())
    }

    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

/// A key is used for one message only, so a fixed nonce is safe.
fn cipher(key: &[u8; 32]) -> ChaCha20Poly1305 {
    ChaCha20Poly1305::new(&Key::from(*key))
}

const NONCE: [u8; 12] = [0; 12];

/// Encrypts `adapter` under `key`.
pub fn seal_adapter(adapter: &[u8], key: &ContentKey) -> Vec<u8> {
    cipher(&key.0)
        .encrypt(&Nonce::from(NONCE), adapter)
        // Fails only past 256 GiB, which no adapter reaches.
        .unwrap_or_default()
}

pub fn open_adapter(sealed: &[u8], key: &ContentKey) -> Result<Vec<u8>, SealError> {
    cipher(&key.0)
        .decrypt(&Nonce::from(NONCE), sealed)
        .map_err(|_| SealError::Decrypt)
}

/// Encrypts `key` to whoever signed `order_signature` over `job` (the
/// order's digest), so only the holder of that key can open it.
pub fn seal_key(
    key: &ContentKey,
    order_signature: &Signature,
    job: &B256,
) -> Result<Vec<u8>, SealError> {
    let recipient = order_signature.recover_key(job)?;
    let ephemeral = SigningKey::random();
    let shared = SharedSecret::new(&recipient, ephemeral.secret());
    let sealed = cipher(&shared.secret_bytes())
        .encrypt(
            &Nonce::from(NONCE),
            Payload {
                msg: &key.0,
                aad: job.as_slice(),
            },
        )
        .map_err(|_| SealError::Decrypt)?;
    let mut out = ephemeral
        .secret()
        .public_key(SECP256K1)
        .serialize()
        .to_vec();
    out.extend(sealed);
    Ok(out)
}

/// Opens a content key sealed by [`seal_key`] with the order signer's key.
pub fn open_key(sealed: &[u8], signer: &SigningKey, job: &B256) -> Result<ContentKey, SealError> {
    if sealed.len() != SEALED_KEY_LEN {
        return Err(SealError::SealedKeyLength(sealed.len()));
    }
    let ephemeral = PublicKey::from_slice(&sealed[..33]).map_err(|_| SealError::EphemeralKey)?;
    let shared = SharedSecret::new(&ephemeral, signer.secret());
    let plain = cipher(&shared.secret_bytes())
        .decrypt(
            &Nonce::from(NONCE),
            Payload {
                msg: &sealed[33..],
                aad: job.as_slice(),
            },
        )
        .map_err(|_| SealError::Decrypt)?;
    let bytes: [u8; 32] = plain.try_into().map_err(|_| SealError::Decrypt)?;
    Ok(ContentKey(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_adapter_opens_with_its_key_only() {
        let key = ContentKey::random();
        let sealed = seal_adapter(b"adapter bytes", &key);
        assert_eq!(open_adapter(&sealed, &key).unwrap(), b"adapter bytes");
        assert_eq!(
            open_adapter(&sealed, &ContentKey::random()),
            Err(SealError::Decrypt)
        );
        let mut changed = sealed.clone();
        changed[0] ^= 1;
        assert_eq!(open_adapter(&changed, &key), Err(SealError::Decrypt));
    }

    #[test]
    fn the_content_key_opens_for_the_order_signer_and_that_job_only() {
        let user = SigningKey::random();
        let job = B256::repeat_byte(7);
        let signature = user.sign_hash(&job);
        let key = ContentKey::random();
        let sealed = seal_key(&key, &signature, &job).unwrap();
        assert_eq!(sealed.len(), SEALED_KEY_LEN);
        assert_eq!(open_key(&sealed, &user, &job).unwrap(), key);
        assert_eq!(
            open_key(&sealed, &SigningKey::random(), &job),
            Err(SealError::Decrypt)
        );
        assert_eq!(
            open_key(&sealed, &user, &B256::repeat_byte(8)),
            Err(SealError::Decrypt)
        );
        assert_eq!(
            open_key(&sealed[1..], &user, &job),
            Err(SealError::SealedKeyLength(SEALED_KEY_LEN - 1))
        );
    }
}
