//! The providers of an `EncryptionConfiguration` and upstream's stored formats
//! (kube-apiserver's `storage/value/encrypt`), so a datastore written by either reads in
//! the other:
//!
//! - `k8s:enc:secretbox:v1:<key>:` + nonce (24) + XSalsa20-Poly1305 box;
//! - `k8s:enc:aesgcm:v1:<key>:` + nonce (12) + AES-GCM sealed data and tag, with the
//!   storage key as additional authenticated data (a value copied to another key does
//!   not open);
//! - `k8s:enc:aescbc:v1:<key>:` + IV (16) + AES-CBC ciphertext of the PKCS#7-padded
//!   value;
//! - `identity`: the value as it is.
//!
//! Keys are 32 bytes for secretbox and 16, 24 or 32 for the AES providers, base64 in the
//! file. Must never return plaintext that failed authentication (GCM, secretbox) or
//! padding checks (CBC).

use aes::{Aes128, Aes192, Aes256};
use aes_gcm::aead::consts::{U12, U16};
use aes_gcm::aead::generic_array::GenericArray;
use aes_gcm::aead::rand_core::RngCore;
use aes_gcm::aead::{Aead, KeyInit, OsRng, Payload};
use aes_gcm::{Aes128Gcm, Aes256Gcm, AesGcm};
use cbc::cipher::{BlockCipher, BlockDecryptMut, BlockEncryptMut, BlockSizeUser, KeyIvInit};
use crypto_secretbox::XSalsa20Poly1305;

/// Stored values of every encrypting provider start with this.
pub const ENCRYPTED_PREFIX: &str = "k8s:enc:";

const AES_BLOCK: usize = 16;
const GCM_NONCE: usize = 12;
const SECRETBOX_NONCE: usize = 24;

/// Why a value could not be sealed or opened, with upstream's messages for the latter.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CipherError {
    #[error("secretbox sealing failed")]
    SecretboxSeal,
    #[error("failed to seal with AES-GCM")]
    GcmSeal,
    #[error(transparent)]
    KeyLength(#[from] cbc::cipher::InvalidLength),
    #[error("the stored data was shorter than the required size")]
    Short,
    #[error("output array was not large enough for encryption")]
    SecretboxOpen,
    #[error("cipher: message authentication failed")]
    GcmOpen,
    #[error("the stored data is not a multiple of the block size")]
    NotWholeBlocks,
    #[error("invalid PKCS7 data (empty or not padded)")]
    NotPadded,
    #[error("invalid padding on input")]
    BadPadding,
}

/// Which provider, as named in the configuration file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Secretbox,
    AesGcm,
    AesCbc,
    Identity,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Secretbox => "secretbox",
            Kind::AesGcm => "aesgcm",
            Kind::AesCbc => "aescbc",
            Kind::Identity => "identity",
        }
    }

    /// What a stored value of this provider starts with, before the key name.
    pub fn prefix(self) -> &'static str {
        match self {
            Kind::Secretbox => "k8s:enc:secretbox:v1:",
            Kind::AesGcm => "k8s:enc:aesgcm:v1:",
            Kind::AesCbc => "k8s:enc:aescbc:v1:",
            Kind::Identity => "",
        }
    }

    /// The key lengths upstream's validation accepts.
    pub fn key_sizes(self) -> &'static [usize] {
        match self {
            Kind::Secretbox => &[32],
            Kind::AesGcm | Kind::AesCbc => &[16, 24, 32],
            Kind::Identity => &[],
        }
    }
}

/// A named key of a provider, ready to seal and open.
#[derive(Clone)]
pub struct Key {
    pub name: String,
    cipher: Cipher,
}

#[derive(Clone)]
enum Cipher {
    Secretbox(XSalsa20Poly1305),
    /// Boxed: the expanded AES key schedules are large.
    Gcm(Box<Gcm>),
    /// The raw key: a CBC mode instance is built per value around a fresh IV.
    Cbc(Vec<u8>),
}

#[derive(Clone)]
enum Gcm {
    Aes128(Aes128Gcm),
    Aes192(AesGcm<Aes192, U12>),
    Aes256(Aes256Gcm),
}

impl Key {
    /// A key of `kind` from its raw bytes; the length must be one of `kind.key_sizes()`.
    pub fn new(kind: Kind, name: String, secret: &[u8]) -> Option<Key> {
        if !kind.key_sizes().contains(&secret.len()) {
            return None;
        }
        let cipher = match kind {
            Kind::Secretbox => Cipher::Secretbox(XSalsa20Poly1305::new_from_slice(secret).ok()?),
            Kind::AesGcm => Cipher::Gcm(Box::new(match secret.len() {
                16 => Gcm::Aes128(Aes128Gcm::new_from_slice(secret).ok()?),
                24 => Gcm::Aes192(AesGcm::new_from_slice(secret).ok()?),
                _ => Gcm::Aes256(Aes256Gcm::new_from_slice(secret).ok()?),
            })),
            Kind::AesCbc => Cipher::Cbc(secret.to_vec()),
            Kind::Identity => return None,
        };
        Some(Key { name, cipher })
    }

    /// Nonce or IV followed by the ciphertext; `storage_key` is authenticated by GCM.
    pub fn seal(&self, storage_key: &str, plain: &[u8]) -> Result<Vec<u8>, CipherError> {
        match &self.cipher {
            Cipher::Secretbox(cipher) => {
                let nonce = random::<SECRETBOX_NONCE>();
                let sealed = cipher
                    .encrypt(GenericArray::from_slice(&nonce), plain)
                    .map_err(|_| CipherError::SecretboxSeal)?;
                Ok([&nonce[..], &sealed].concat())
            }
            Cipher::Gcm(gcm) => {
                let nonce = random::<GCM_NONCE>();
                let payload = Payload { msg: plain, aad: storage_key.as_bytes() };
                let nonce_ref = GenericArray::from_slice(&nonce);
                let sealed = match gcm.as_ref() {
                    Gcm::Aes128(c) => c.encrypt(nonce_ref, payload),
                    Gcm::Aes192(c) => c.encrypt(nonce_ref, payload),
                    Gcm::Aes256(c) => c.encrypt(nonce_ref, payload),
                }
                .map_err(|_| CipherError::GcmSeal)?;
                Ok([&nonce[..], &sealed].concat())
            }
            Cipher::Cbc(key) => {
                let iv = random::<AES_BLOCK>();
                let padding = AES_BLOCK - plain.len() % AES_BLOCK;
                let mut out = Vec::with_capacity(AES_BLOCK + plain.len() + padding);
                out.extend_from_slice(&iv);
                out.extend_from_slice(plain);
                out.resize(out.len() + padding, padding as u8);
                let body = &mut out[AES_BLOCK..];
                match key.len() {
                    16 => cbc_encrypt::<Aes128>(key, &iv, body),
                    24 => cbc_encrypt::<Aes192>(key, &iv, body),
                    _ => cbc_encrypt::<Aes256>(key, &iv, body),
                }?;
                Ok(out)
            }
        }
    }

    /// The plaintext of what [`Key::seal`] returned, with upstream's error messages.
    pub fn open(&self, storage_key: &str, data: &[u8]) -> Result<Vec<u8>, CipherError> {
        match &self.cipher {
            Cipher::Secretbox(cipher) => {
                if data.len() < SECRETBOX_NONCE + 16 {
                    return Err(CipherError::Short);
                }
                let (nonce, boxed) = data.split_at(SECRETBOX_NONCE);
                cipher
                    .decrypt(GenericArray::from_slice(nonce), boxed)
                    .map_err(|_| CipherError::SecretboxOpen)
            }
            Cipher::Gcm(gcm) => {
                if data.len() < GCM_NONCE {
                    return Err(CipherError::Short);
                }
                let (nonce, sealed) = data.split_at(GCM_NONCE);
                let payload = Payload { msg: sealed, aad: storage_key.as_bytes() };
                let nonce = GenericArray::from_slice(nonce);
                match gcm.as_ref() {
                    Gcm::Aes128(c) => c.decrypt(nonce, payload),
                    Gcm::Aes192(c) => c.decrypt(nonce, payload),
                    Gcm::Aes256(c) => c.decrypt(nonce, payload),
                }
                .map_err(|_| CipherError::GcmOpen)
            }
            Cipher::Cbc(key) => {
                if data.len() < AES_BLOCK {
                    return Err(CipherError::Short);
                }
                let (iv, body) = data.split_at(AES_BLOCK);
                if body.len() % AES_BLOCK != 0 {
                    return Err(CipherError::NotWholeBlocks);
                }
                let mut plain = body.to_vec();
                match key.len() {
                    16 => cbc_decrypt::<Aes128>(key, iv, &mut plain),
                    24 => cbc_decrypt::<Aes192>(key, iv, &mut plain),
                    _ => cbc_decrypt::<Aes256>(key, iv, &mut plain),
                }?;
                let padding = plain.last().copied().unwrap_or(0) as usize;
                if padding == 0 || padding > plain.len() {
                    return Err(CipherError::NotPadded);
                }
                let size = plain.len() - padding;
                if plain[size..].iter().any(|b| *b as usize != padding) {
                    return Err(CipherError::BadPadding);
                }
                plain.truncate(size);
                Ok(plain)
            }
        }
    }
}

fn random<const N: usize>() -> [u8; N] {
    let mut bytes = [0; N];
    OsRng.fill_bytes(&mut bytes);
    bytes
}

/// CBC over whole blocks, in place; `body` is already padded.
fn cbc_encrypt<C>(key: &[u8], iv: &[u8], body: &mut [u8]) -> Result<(), CipherError>
where
    C: BlockEncryptMut + BlockCipher + KeyInit + BlockSizeUser<BlockSize = U16>,
{
    let mut mode = cbc::Encryptor::<C>::new_from_slices(key, iv)?;
    for block in body.chunks_exact_mut(AES_BLOCK) {
        mode.encrypt_block_mut(GenericArray::from_mut_slice(block));
    }
    Ok(())
}

fn cbc_decrypt<C>(key: &[u8], iv: &[u8], body: &mut [u8]) -> Result<(), CipherError>
where
    C: BlockDecryptMut + BlockCipher + KeyInit + BlockSizeUser<BlockSize = U16>,
{
    let mut mode = cbc::Decryptor::<C>::new_from_slices(key, iv)?;
    for block in body.chunks_exact_mut(AES_BLOCK) {
        mode.decrypt_block_mut(GenericArray::from_mut_slice(block));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const STORAGE_KEY: &str = "/registry/secrets/default/s";

    #[test]
    fn every_provider_and_key_size_round_trips() {
        let plain = br#"{"data":{"password":"aHVudGVyMg=="}}"#;
        for (kind, size) in [
            (Kind::Secretbox, 32),
            (Kind::AesGcm, 16),
            (Kind::AesGcm, 24),
            (Kind::AesGcm, 32),
            (Kind::AesCbc, 16),
            (Kind::AesCbc, 24),
            (Kind::AesCbc, 32),
        ] {
            let key = Key::new(kind, "k".into(), &vec![7; size]).expect("valid key");
            for text in [&plain[..], b"", &[0x10; 16]] {
                let sealed = key.seal(STORAGE_KEY, text).expect("seals");
                assert_eq!(key.open(STORAGE_KEY, &sealed).as_deref(), Ok(text), "{kind:?}");
                let expected_len = match kind {
                    Kind::Secretbox => 24 + text.len() + 16,
                    Kind::AesGcm => 12 + text.len() + 16,
                    _ => 16 + (text.len() / 16 + 1) * 16,
                };
                assert_eq!(sealed.len(), expected_len, "{kind:?} {size}");
            }
            // Two seals of the same value differ: the nonce or IV is random.
            assert_ne!(key.seal(STORAGE_KEY, plain), key.seal(STORAGE_KEY, plain));
        }
    }

    #[test]
    fn gcm_authenticates_the_storage_key_and_the_data() {
        let key = Key::new(Kind::AesGcm, "k".into(), &[1; 32]).expect("valid key");
        let sealed = key.seal(STORAGE_KEY, b"secret").expect("seals");
        let moved = key.open("/registry/secrets/default/other", &sealed);
        assert_eq!(moved, Err(CipherError::GcmOpen));
        assert_eq!(CipherError::GcmOpen.to_string(), "cipher: message authentication failed");
        let mut tampered = sealed.clone();
        tampered[13] ^= 1;
        assert!(key.open(STORAGE_KEY, &tampered).is_err());
        assert_eq!(key.open(STORAGE_KEY, &sealed[..5]), Err(CipherError::Short));
    }

    #[test]
    fn cbc_matches_the_standard_and_checks_padding() {
        // NIST SP 800-38A F.2.1, CBC-AES128.Encrypt, first block.
        let key = hex("2b7e151628aed2a6abf7158809cf4f3c");
        let iv = hex("000102030405060708090a0b0c0d0e0f");
        let mut block = hex("6bc1bee22e409f96e93d7e117393172a");
        cbc_encrypt::<Aes128>(&key, &iv, &mut block).expect("encrypts");
        assert_eq!(block, hex("7649abac8119b246cee98e9b12e9197d"));

        let key = Key::new(Kind::AesCbc, "k".into(), &key).expect("valid key");
        let sealed = key.seal(STORAGE_KEY, b"secret").expect("seals");
        assert_eq!(
            key.open(STORAGE_KEY, &sealed[..20]).map_err(|e| e.to_string()),
            Err("the stored data is not a multiple of the block size".into())
        );
        let mut tampered = sealed.clone();
        tampered[15] ^= 0xff; // the IV's last byte flips the padding byte
        assert!(key.open(STORAGE_KEY, &tampered).is_err());
    }

    #[test]
    fn keys_of_the_wrong_size_are_refused() {
        assert!(Key::new(Kind::AesGcm, "k".into(), &[0; 20]).is_none());
        assert!(Key::new(Kind::AesCbc, "k".into(), &[0; 64]).is_none());
        assert!(Key::new(Kind::Secretbox, "k".into(), &[0; 16]).is_none());
    }

    fn hex(text: &str) -> Vec<u8> {
        (0..text.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&text[i..i + 2], 16).expect("hex"))
            .collect()
    }
}
