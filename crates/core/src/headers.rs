//! The `X-ZG-*` header codec of the wire protocol. Every malformed value gets
//! an error naming the header, what was expected and what came.

use crate::{Receipt, Signature};
use alloy_primitives::{Address, U256, hex};
use serde::{Deserialize, Serialize};
use std::{fmt, str::FromStr};

pub const USER: &str = "x-zg-user";
pub const CUMULATIVE: &str = "x-zg-cumulative";
pub const NONCE: &str = "x-zg-nonce";
pub const SIGNATURE: &str = "x-zg-signature";
pub const RECEIPT: &str = "x-zg-receipt";
pub const REQUEST_ID: &str = "x-zg-request-id";
/// Unix seconds of a statement request (`GET /v1/account/{user}`), signed
/// with `X-ZG-Signature`.
pub const TIMESTAMP: &str = "x-zg-timestamp";
/// The quote a paid request is sent under: the [`crate::SignedQuote`] as
/// `GET /v1/quote` served it, compact JSON. The broker charges at most its
/// prices while it is valid (and refuses it, `quote_invalid`, after).
pub const QUOTE: &str = "x-zg-quote";
/// What every header of the protocol starts with.
pub const PREFIX: &str = "x-zg-";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HeaderError {
    #[error(
        "missing header {0}: a paid request carries X-ZG-User, X-ZG-Cumulative, X-ZG-Nonce and X-ZG-Signature"
    )]
    Missing(&'static str),
    #[error("header {header} is malformed: expected {expected}, got {got:?}")]
    Malformed {
        header: &'static str,
        expected: &'static str,
        got: String,
    },
}

impl HeaderError {
    /// `header` came as `got` (cut to 100 characters), not as `expected`.
    pub fn malformed(header: &'static str, expected: &'static str, got: &str) -> Self {
        Self::Malformed {
            header,
            expected,
            got: got.chars().take(100).collect(),
        }
    }
}

/// 16 random bytes that make every request's digest unique.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Nonce(pub [u8; 16]);

impl Nonce {
    pub fn random() -> Self {
        Self(rand::random())
    }
}

impl FromStr for Nonce {
    type Err = ();

    fn from_str(text: &str) -> Result<Self, ()> {
        let text = text.strip_prefix("0x").unwrap_or(text);
        let mut bytes = [0u8; 16];
        hex::decode_to_slice(text, &mut bytes).map_err(|_| ())?;
        Ok(Self(bytes))
    }
}

impl fmt::Display for Nonce {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

/// The four headers of a paid request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PaymentHeaders {
    pub user: Address,
    pub cumulative: U256,
    pub nonce: Nonce,
    pub signature: Signature,
}

impl PaymentHeaders {
    /// Decodes from any header map through `get(lowercase name)`.
    pub fn decode<'a>(get: impl Fn(&'static str) -> Option<&'a str>) -> Result<Self, HeaderError> {
        let field = |name: &'static str| get(name).map(str::trim).ok_or(HeaderError::Missing(name));
        let malformed = HeaderError::malformed;

        let user = field(USER)?;
        let user = parse_address(user)
            .ok_or_else(|| malformed(USER, "a 0x-prefixed 20-byte hex address", user))?;
        let cumulative = field(CUMULATIVE)?;
        let cumulative = parse_decimal(cumulative).ok_or_else(|| {
            malformed(
                CUMULATIVE,
                "a decimal number of neuron (digits only)",
                cumulative,
            )
        })?;
        let nonce = field(NONCE)?;
        let nonce = nonce
            .parse()
            .map_err(|()| malformed(NONCE, "16 bytes as 32 hex digits", nonce))?;
        let signature = field(SIGNATURE)?;
        let signature = signature.parse().map_err(|_| {
            malformed(
                SIGNATURE,
                "a 65-byte hex signature with v 27/28 and low s",
                signature,
            )
        })?;
        Ok(Self {
            user,
            cumulative,
            nonce,
            signature,
        })
    }

    /// (name, value) pairs to put on a request.
    pub fn encode(&self) -> [(&'static str, String); 4] {
        [
            (USER, self.user.to_string()),
            (CUMULATIVE, self.cumulative.to_string()),
            (NONCE, self.nonce.to_string()),
            (SIGNATURE, self.signature.to_string()),
        ]
    }
}

/// A receipt and the service signer's signature over it, as carried in the
/// `X-ZG-Receipt` header (compact JSON) and by `GET /v1/receipts/{id}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedReceipt {
    pub receipt: Receipt,
    pub signature: String,
}

impl SignedReceipt {
    pub fn new(receipt: Receipt, signature: &Signature) -> Self {
        Self {
            receipt,
            signature: signature.to_string(),
        }
    }

    pub fn signature(&self) -> Result<Signature, crate::SignatureError> {
        self.signature.parse()
    }

    pub fn to_header(&self) -> String {
        // Serializing plain strings and numbers cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }

    pub fn from_header(value: &str) -> Result<Self, HeaderError> {
        serde_json::from_str(value).map_err(|e| HeaderError::Malformed {
            header: RECEIPT,
            expected: "a JSON signed receipt",
            got: e.to_string(),
        })
    }
}

fn parse_address(text: &str) -> Option<Address> {
    let hex_part = text.strip_prefix("0x")?;
    (hex_part.len() == 40).then(|| hex_part.parse().ok())?
}

fn parse_decimal(text: &str) -> Option<U256> {
    if text.is_empty() || text.len() > 78 || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    U256::from_str_radix(text, 10).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::SigningKey;
    use std::collections::HashMap;

    fn sample() -> PaymentHeaders {
        let key = SigningKey::random();
        PaymentHeaders {
            user: key.address(),
            cumulative: U256::from(123_456u64),
            nonce: Nonce::random(),
            signature: key.sign_hash(&Default::default()),
        }
    }

    fn decode(map: &HashMap<&'static str, String>) -> Result<PaymentHeaders, HeaderError> {
        PaymentHeaders::decode(|name| map.get(name).map(String::as_str))
    }

    #[test]
    fn round_trips() {
        let headers = sample();
        let map: HashMap<_, _> = headers.encode().into_iter().collect();
        assert_eq!(decode(&map).unwrap(), headers);
    }

    #[test]
    fn names_the_bad_header() {
        let good: HashMap<_, _> = sample().encode().into_iter().collect();
        for name in [USER, CUMULATIVE, NONCE, SIGNATURE] {
            let mut map = good.clone();
            map.remove(name);
            assert_eq!(decode(&map), Err(HeaderError::Missing(name)));
        }
        let cases = [
            (USER, "0x1234"),
            (USER, "f39Fd6e51aad88F6F4ce6aB8827279cffFb92266"),
            (CUMULATIVE, "-1"),
            (CUMULATIVE, "1.5"),
            (CUMULATIVE, ""),
            (CUMULATIVE, &"9".repeat(79)),
            (CUMULATIVE, &"9".repeat(78)),
            (NONCE, "abcd"),
            (NONCE, &"zz".repeat(16)),
            (SIGNATURE, "0x00"),
            (SIGNATURE, &format!("0x{}", "11".repeat(65))),
        ];
        for (name, value) in cases {
            let mut map = good.clone();
            map.insert(name, value.to_owned());
            match decode(&map) {
                Err(HeaderError::Malformed { header, .. }) => assert_eq!(header, name, "{value}"),
                other => panic!("{name}={value}: {other:?}"),
            }
        }
    }

    #[test]
    fn signed_receipt_header_round_trips_and_rejects_garbage() {
        let key = SigningKey::random();
        let receipt = Receipt {
            user: Address::repeat_byte(1),
            provider: key.address(),
            service: Default::default(),
            model_digest: Default::default(),
            request_digest: Default::default(),
            response_digest: Default::default(),
            input_tokens: U256::from(3u64),
            output_tokens: U256::from(4u64),
            input_price: U256::from(5u64),
            output_price: U256::from(6u64),
            cached_tokens: U256::ZERO,
            cached_price: U256::ZERO,
            fee: U256::from(39u64),
            owed: U256::from(39u64),
            proof_digest: Default::default(),
            issued_at: 0,
        };
        let signed = SignedReceipt::new(receipt, &key.sign_hash(&Default::default()));
        let header = signed.to_header();
        assert!(header.bytes().all(|b| (0x20..0x7f).contains(&b)));
        assert_eq!(SignedReceipt::from_header(&header).unwrap(), signed);
        assert!(SignedReceipt::from_header("{").is_err());
    }
}
