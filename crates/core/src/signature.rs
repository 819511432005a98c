//! secp256k1 keys and 65-byte Ethereum signatures over 32-byte digests.
//! libsecp256k1 (the `secp256k1` crate) because the hot path signs or
//! recovers once per request and it is several times faster than k256.

use alloy_primitives::{Address, B256, U256, hex, keccak256, uint};
use secp256k1::{
    Message, PublicKey, SECP256K1, SecretKey,
    ecdsa::{RecoverableSignature, RecoveryId},
};
use std::{fmt, str::FromStr};

/// Half the curve order: signatures with a larger `s` are malleable copies
/// and are refused, as the contract (OpenZeppelin's ECDSA) refuses them.
const HALF_ORDER: U256 =
    uint!(0x7FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF5D576E7357A4501DDFE92F46681B20A0_U256);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("signature must be 65 bytes (r, s, v), got {0}")]
    Length(usize),
    #[error("signature is not hex: {0}")]
    Hex(String),
    #[error("signature v must be 27 or 28, got {0}")]
    RecoveryId(u8),
    #[error("signature s is in the upper half of the curve order (malleable); sign again")]
    HighS,
    #[error("signature does not recover to any public key")]
    Unrecoverable,
    #[error("private key is not a valid secp256k1 scalar")]
    InvalidKey,
}

/// A 65-byte signature: r (32) || s (32) || v (1, 27 or 28).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Signature([u8; 65]);

impl Signature {
    /// Checks the shape (length, v, low s); whether it recovers is `recover`'s job.
    pub fn from_slice(bytes: &[u8]) -> Result<Self, SignatureError> {
        let bytes: [u8; 65] = bytes
            .try_into()
            .map_err(|_| SignatureError::Length(bytes.len()))?;
        if !matches!(bytes[64], 27 | 28) {
            return Err(SignatureError::RecoveryId(bytes[64]));
        }
        if U256::from_be_slice(&bytes[32..64]) > HALF_ORDER {
            return Err(SignatureError::HighS);
        }
        Ok(Self(bytes))
    }

    pub fn as_bytes(&self) -> &[u8; 65] {
        &self.0
    }

    /// The address whose key signed `hash`.
    pub fn recover(&self, hash: &B256) -> Result<Address, SignatureError> {
        Ok(address_of(&self.recover_key(hash)?))
    }

    /// The public key that signed `hash` (to encrypt to its owner).
    pub(crate) fn recover_key(&self, hash: &B256) -> Result<PublicKey, SignatureError> {
        let id = RecoveryId::try_from(i32::from(self.0[64] - 27))
            .map_err(|_| SignatureError::RecoveryId(self.0[64]))?;
        let sig = RecoverableSignature::from_compact(&self.0[..64], id)
            .map_err(|_| SignatureError::Unrecoverable)?;
        SECP256K1
            .recover_ecdsa(Message::from_digest(hash.0), &sig)
            .map_err(|_| SignatureError::Unrecoverable)
    }
}

impl FromStr for Signature {
    type Err = SignatureError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let bytes: [u8; 65] =
            hex::decode_to_array(text).map_err(|e| SignatureError::Hex(e.to_string()))?;
        Self::from_slice(&bytes)
    }
}

impl fmt::Display for Signature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode_prefixed(self.0))
    }
}

/// In JSON: the `0x`-prefixed hex of the 65 bytes.
impl serde::Serialize for Signature {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Signature {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

impl fmt::Debug for Signature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// A private key that signs vouchers (users) or receipts (providers).
#[derive(Clone)]
pub struct SigningKey {
    secret: SecretKey,
    address: Address,
}

impl SigningKey {
    pub fn from_bytes(bytes: &B256) -> Result<Self, SignatureError> {
        let secret = SecretKey::from_byte_array(bytes.0).map_err(|_| SignatureError::InvalidKey)?;
        let address = address_of(&secret.public_key(SECP256K1));
        Ok(Self { secret, address })
    }

    pub fn random() -> Self {
        loop {
            if let Ok(key) = Self::from_bytes(&B256::from(rand::random::<[u8; 32]>())) {
                return key;
            }
        }
    }

    pub fn address(&self) -> Address {
        self.address
    }

    /// The raw private key, for writing a keystore.
    pub fn to_bytes(&self) -> B256 {
        B256::from(self.secret.secret_bytes())
    }

    pub(crate) fn secret(&self) -> &SecretKey {
        &self.secret
    }

    /// Signs a digest; libsecp256k1 always produces low-s signatures.
    pub fn sign_hash(&self, hash: &B256) -> Signature {
        let sig = SECP256K1.sign_ecdsa_recoverable(Message::from_digest(hash.0), &self.secret);
        let (id, rs) = sig.serialize_compact();
        let mut bytes = [0u8; 65];
        bytes[..64].copy_from_slice(&rs);
        // RecoveryId is 0..=3; Ethereum keeps only 0 and 1, which libsecp256k1 yields
        // for every key that is not astronomically unlucky.
        bytes[64] = 27 + i32::from(id) as u8;
        Signature(bytes)
    }
}

impl FromStr for SigningKey {
    type Err = SignatureError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let text = text.trim();
        let text = text.strip_prefix("0x").unwrap_or(text);
        let bytes: [u8; 32] = hex::decode(text)
            .ok()
            .and_then(|b| b.try_into().ok())
            .ok_or(SignatureError::InvalidKey)?;
        Self::from_bytes(&B256::from(bytes))
    }
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SigningKey({})", self.address)
    }
}

fn address_of(key: &PublicKey) -> Address {
    let uncompressed = key.serialize_uncompressed();
    Address::from_slice(&keccak256(&uncompressed[1..])[12..])
}

#[cfg(test)]
mod tests {
    use super::*;

    // Anvil's first dev account.
    const DEV_KEY: &str = "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80";
    const DEV_ADDRESS: &str = "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266";

    #[test]
    fn derives_the_ethereum_address() {
        let key: SigningKey = DEV_KEY.parse().unwrap();
        assert_eq!(key.address(), DEV_ADDRESS.parse::<Address>().unwrap());
    }

    #[test]
    fn signs_and_recovers() {
        let key = SigningKey::random();
        let hash = keccak256(b"hello");
        let sig = key.sign_hash(&hash);
        assert_eq!(sig.recover(&hash).unwrap(), key.address());
        assert_ne!(sig.recover(&keccak256(b"other")).unwrap(), key.address());
        let parsed: Signature = sig.to_string().parse().unwrap();
        assert_eq!(parsed, sig);
    }

    #[test]
    fn refuses_malleable_and_malformed_signatures() {
        let key = SigningKey::random();
        let sig = key.sign_hash(&keccak256(b"x"));
        let mut bytes = *sig.as_bytes();
        // s' = n - s, v flipped: the same signature in its high-s form.
        let n = uint!(0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141_U256);
        let s = U256::from_be_slice(&bytes[32..64]);
        bytes[32..64].copy_from_slice(&(n - s).to_be_bytes::<32>());
        bytes[64] = 55 - bytes[64];
        assert_eq!(Signature::from_slice(&bytes), Err(SignatureError::HighS));
        assert_eq!(
            Signature::from_slice(&[0u8; 64]),
            Err(SignatureError::Length(64))
        );
        let mut bad_v = *sig.as_bytes();
        bad_v[64] = 1;
        assert_eq!(
            Signature::from_slice(&bad_v),
            Err(SignatureError::RecoveryId(1))
        );
        assert!(matches!(
            "0xzz".parse::<Signature>(),
            Err(SignatureError::Hex(_))
        ));
        assert!("0x00".parse::<SigningKey>().is_err());
        assert!(SigningKey::from_bytes(&B256::ZERO).is_err());
    }
}
