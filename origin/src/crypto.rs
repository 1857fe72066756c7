//! Encryption at rest. Every user has a random 256-bit data key; their personal data is sealed
//! with it (AES-256-GCM), and the data key itself is stored wrapped by a key derived from the
//! master key in the configuration, with the master key's id beside it so the master key can
//! rotate (rewrap the data keys, nothing else). Emails are looked up through a blind index:
//! HMAC-SHA256 of the normalised email under another key derived from the master key, so the
//! database never holds an email in clear, not even to find one.
//!
//! Every key the master key yields comes from HKDF-SHA256 with its own label, so no two uses
//! share key material. Data keys wrapped before the wrapping key was derived (by the master key
//! bytes themselves) stay readable: the stored wrap id tells the two formats apart, a bare
//! master key id (`k1`) for the legacy wrap and the id with [`WRAP_V2_SUFFIX`] (`k1.v2`) for the
//! derived one. New wraps always use the derived key, and `rewrap-keys` moves the legacy ones.
//!
//! Every sealed blob is bound to its row and field through the AEAD's associated data, so a
//! ciphertext copied into another user's row or another column does not decrypt.

use aes_gcm::aead::rand_core::RngCore;
use aes_gcm::aead::{Aead, KeyInit, OsRng, Payload};
use aes_gcm::{Aes256Gcm, Key, Nonce};
use hkdf::Hkdf;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use zeroize::{Zeroize, ZeroizeOnDrop};

use crate::config::MasterKey;

const NONCE_LEN: usize = 12;

/// The suffix of the stored wrap id of a data key wrapped by the HKDF-derived wrapping key.
/// Master key ids are `[A-Za-z0-9_-]` only (see `config`), so it cannot be part of an id.
pub const WRAP_V2_SUFFIX: &str = ".v2";

/// The HKDF labels of the keys a master key yields: one key per use.
const LABEL_BLIND_INDEX: &[u8] = b"blind-index/email/v1";
const LABEL_SECRET_MAC: &[u8] = b"secret-mac/v1";
const LABEL_DATA_KEY_WRAP: &[u8] = b"data-key-wrap/v2";

#[derive(Debug, thiserror::Error)]
pub enum CryptoError {
    #[error("a sealed value is too short to hold a nonce and a tag")]
    Truncated,
    #[error("a sealed value failed authentication (wrong key, or moved from another row or field)")]
    Authentication,
    #[error("the data key was wrapped by master key {0:?}, which this origin does not hold")]
    UnknownMasterKey(String),
}

/// A user's data key. Zeroed when dropped.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct DataKey([u8; 32]);

impl DataKey {
    pub fn generate() -> Self {
        let mut bytes = [0u8; 32];
        OsRng.fill_bytes(&mut bytes);
        Self(bytes)
    }

    fn cipher(&self) -> Aes256Gcm {
        Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(&self.0))
    }

    /// Seals `plaintext`, bound to `context` (e.g. `"usr_…/email"`). Output: nonce ‖ ciphertext ‖ tag.
    pub fn seal(&self, plaintext: &[u8], context: &str) -> Vec<u8> {
        seal_with(&self.cipher(), plaintext, context)
    }

    pub fn open(&self, sealed: &[u8], context: &str) -> Result<Vec<u8>, CryptoError> {
        open_with(&self.cipher(), sealed, context)
    }
}

fn seal_with(cipher: &Aes256Gcm, plaintext: &[u8], context: &str) -> Vec<u8> {
    let mut nonce = [0u8; NONCE_LEN];
    OsRng.fill_bytes(&mut nonce);
    // Encryption with a valid key and a 96-bit nonce only fails for plaintexts beyond GCM's
    // 64 GiB limit, which no profile approaches; an empty output would fail to open, loudly.
    let ciphertext = cipher
        .encrypt(Nonce::from_slice(&nonce), Payload { msg: plaintext, aad: context.as_bytes() })
        .unwrap_or_default();
    let mut out = Vec::with_capacity(NONCE_LEN + ciphertext.len());
    out.extend_from_slice(&nonce);
    out.extend_from_slice(&ciphertext);
    out
}

fn open_with(cipher: &Aes256Gcm, sealed: &[u8], context: &str) -> Result<Vec<u8>, CryptoError> {
    if sealed.len() < NONCE_LEN + 16 {
        return Err(CryptoError::Truncated);
    }
    let (nonce, ciphertext) = sealed.split_at(NONCE_LEN);
    cipher
        .decrypt(Nonce::from_slice(nonce), Payload { msg: ciphertext, aad: context.as_bytes() })
        .map_err(|_| CryptoError::Authentication)
}

/// A data key as stored: sealed by a master key, with its wrap id (the master key's id, plus
/// [`WRAP_V2_SUFFIX`] when the wrapping key was derived from it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WrappedKey {
    pub master_key_id: String,
    pub sealed: Vec<u8>,
}

/// How a data key was wrapped, read from its stored wrap id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum WrapFormat {
    /// By the master key bytes themselves (before the wrapping key was derived with HKDF).
    Legacy,
    /// By the wrapping key HKDF derives from the master key (`data-key-wrap/v2`).
    Derived,
}

/// The master key id and the wrap format a stored wrap id names.
fn parse_wrap_id(wrap_id: &str) -> (&str, WrapFormat) {
    match wrap_id.strip_suffix(WRAP_V2_SUFFIX) {
        Some(key_id) => (key_id, WrapFormat::Derived),
        None => (wrap_id, WrapFormat::Legacy),
    }
}

/// The master key id a stored wrap id refers to, whatever the wrap format.
pub fn master_key_id_of(wrap_id: &str) -> &str {
    parse_wrap_id(wrap_id).0
}

/// One master key: the AEADs that wrap data keys (the derived one for new wraps, the master key
/// itself for reading legacy wraps), and the blind-index and keyed-hash keys derived from it.
struct MasterEntry {
    id: String,
    /// The master key bytes as an AES key: opens legacy wraps only, never seals.
    legacy_aead: Aes256Gcm,
    /// The HKDF-derived wrapping key: seals every new wrap.
    aead: Aes256Gcm,
    blind_index: Hmac<Sha256>,
    /// The key of the origin's keyed hashes (`Keyring::secret_macs`): recovery codes, device
    /// tokens. Derived from the master key with its own HKDF label.
    secret_mac: Hmac<Sha256>,
}

impl MasterEntry {
    fn new(master: &MasterKey) -> Self {
        let hk = Hkdf::<Sha256>::new(Some(b"user-management/origin"), &master.bytes);
        let mut index_key = [0u8; 32];
        // 32 bytes is far below HKDF-SHA256's 8160-byte limit, so `expand` cannot fail here.
        let _ = hk.expand(LABEL_BLIND_INDEX, &mut index_key);
        let blind_index =
            <Hmac<Sha256> as Mac>::new_from_slice(&index_key).unwrap_or_else(|_| unreachable_hmac());
        index_key.zeroize();
        let mut mac_key = [0u8; 32];
        let _ = hk.expand(LABEL_SECRET_MAC, &mut mac_key);
        let secret_mac =
            <Hmac<Sha256> as Mac>::new_from_slice(&mac_key).unwrap_or_else(|_| unreachable_hmac());
        mac_key.zeroize();
        let mut wrap_key = [0u8; 32];
        let _ = hk.expand(LABEL_DATA_KEY_WRAP, &mut wrap_key);
        let aead = Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(&wrap_key));
        wrap_key.zeroize();
        Self {
            id: master.id.clone(),
            legacy_aead: Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(&master.bytes)),
            aead,
            blind_index,
            secret_mac,
        }
    }

    fn wrap_aead(&self, format: WrapFormat) -> &Aes256Gcm {
        match format {
            WrapFormat::Legacy => &self.legacy_aead,
            WrapFormat::Derived => &self.aead,
        }
    }

    fn mac(&self, purpose: &str, data: &[u8]) -> [u8; 32] {
        let mut mac = self.secret_mac.clone();
        mac.update(purpose.as_bytes());
        mac.update(&[0]);
        mac.update(data);
        mac.finalize().into_bytes().into()
    }

    fn index(&self, normalised_email: &str) -> Vec<u8> {
        let mut mac = self.blind_index.clone();
        mac.update(normalised_email.as_bytes());
        mac.finalize().into_bytes().to_vec()
    }
}

/// The master key in use, and the retired ones a rotation still needs to read what they
/// wrapped (and to find emails indexed under them) until `rewrap-keys` has moved it all.
pub struct Keyring {
    current: MasterEntry,
    retired: Vec<MasterEntry>,
}

impl Keyring {
    pub fn new(master: &MasterKey) -> Self {
        Self::with_retired(master, &[])
    }

    pub fn with_retired(current: &MasterKey, retired: &[MasterKey]) -> Self {
        Self { current: MasterEntry::new(current), retired: retired.iter().map(MasterEntry::new).collect() }
    }

    /// The id of the master key new wraps use.
    pub fn current_id(&self) -> &str {
        &self.current.id
    }

    /// The wrap id new wraps are stored with (the current key, derived wrapping key): any other
    /// stored wrap id is for `rewrap-keys` to move.
    pub fn current_wrap_id(&self) -> String {
        format!("{}{WRAP_V2_SUFFIX}", self.current.id)
    }

    /// Whether the stored wrap id `wrap_id` names the current master key or a retired one (in
    /// either wrap format).
    pub fn knows(&self, wrap_id: &str) -> bool {
        self.entry(master_key_id_of(wrap_id)).is_some()
    }

    fn entry(&self, key_id: &str) -> Option<&MasterEntry> {
        std::iter::once(&self.current).chain(&self.retired).find(|e| e.id == key_id)
    }

    /// Whether retired keys are configured (a rotation may be under way).
    pub fn has_retired(&self) -> bool {
        !self.retired.is_empty()
    }

    /// Wraps a data key under the current master key's derived wrapping key.
    pub fn wrap(&self, key: &DataKey, user_id: &str) -> WrappedKey {
        WrappedKey {
            master_key_id: self.current_wrap_id(),
            sealed: seal_with(&self.current.aead, &key.0, &format!("{user_id}/data-key")),
        }
    }

    /// Wraps the way the origin did before the wrapping key was derived, so tests can make the
    /// rows an older origin left behind.
    #[cfg(test)]
    pub(crate) fn wrap_legacy(&self, key: &DataKey, user_id: &str) -> WrappedKey {
        WrappedKey {
            master_key_id: self.current.id.clone(),
            sealed: seal_with(&self.current.legacy_aead, &key.0, &format!("{user_id}/data-key")),
        }
    }

    /// Unwraps a data key in the format and under the master key its wrap id names.
    pub fn unwrap(&self, wrapped: &WrappedKey, user_id: &str) -> Result<DataKey, CryptoError> {
        let (key_id, format) = parse_wrap_id(&wrapped.master_key_id);
        let entry = self.entry(key_id).ok_or_else(|| CryptoError::UnknownMasterKey(key_id.to_owned()))?;
        let mut bytes = open_with(entry.wrap_aead(format), &wrapped.sealed, &format!("{user_id}/data-key"))?;
        let key: Result<[u8; 32], _> = bytes.as_slice().try_into();
        bytes.zeroize();
        key.map(DataKey).map_err(|_| CryptoError::Truncated)
    }

    /// The blind index of a normalised email under the current key: equal emails give equal
    /// indexes, and the index reveals nothing without the master key.
    pub fn email_index(&self, normalised_email: &str) -> Vec<u8> {
        self.current.index(normalised_email)
    }

    /// A keyed hash (HMAC-SHA256 under a key derived from the current master key) of `data`
    /// for `purpose` (a label such as `"recovery-code"`), for secrets too short to be stored as
    /// plain hashes (NIST SP 800-63B asks for a keyed hash under 112 bits).
    pub fn secret_mac(&self, purpose: &str, data: &[u8]) -> [u8; 32] {
        self.current.mac(purpose, data)
    }

    /// The same keyed hash under the current key first, then each retired one: what a stored
    /// hash may equal while a master-key rotation is under way.
    pub fn secret_macs(&self, purpose: &str, data: &[u8]) -> Vec<[u8; 32]> {
        std::iter::once(&self.current).chain(&self.retired).map(|e| e.mac(purpose, data)).collect()
    }

    /// The email's index under each retired key, for lookups while a rotation is under way.
    pub fn retired_email_indexes(&self, normalised_email: &str) -> Vec<Vec<u8>> {
        self.retired.iter().map(|e| e.index(normalised_email)).collect()
    }
}

#[allow(clippy::panic)]
fn unreachable_hmac() -> Hmac<Sha256> {
    panic!("HMAC-SHA256 accepts a 32-byte key")
}

/// 16 random bytes from the OS, for ids and tokens.
pub fn random_16() -> [u8; 16] {
    let mut bytes = [0u8; 16];
    OsRng.fill_bytes(&mut bytes);
    bytes
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keyring(id: &str, byte: u8) -> Keyring {
        Keyring::new(&MasterKey { id: id.into(), bytes: [byte; 32] })
    }

    #[test]
    fn sealed_data_opens_only_in_its_context() {
        let key = DataKey::generate();
        let sealed = key.seal(b"user@example.com", "usr_1/email");
        assert_eq!(key.open(&sealed, "usr_1/email").unwrap(), b"user@example.com");
        assert!(matches!(key.open(&sealed, "usr_2/email"), Err(CryptoError::Authentication)));
        assert!(matches!(key.open(&sealed, "usr_1/profile"), Err(CryptoError::Authentication)));
        assert!(matches!(DataKey::generate().open(&sealed, "usr_1/email"), Err(CryptoError::Authentication)));
        assert!(matches!(key.open(&sealed[..10], "usr_1/email"), Err(CryptoError::Truncated)));
        assert!(!sealed.windows(7).any(|w| w == b"example"), "the plaintext shows through");
    }

    #[test]
    fn data_keys_wrap_and_unwrap_under_the_master_key() {
        let ring = keyring("k1", 1);
        let key = DataKey::generate();
        let wrapped = ring.wrap(&key, "usr_1");
        assert_eq!(wrapped.master_key_id, "k1.v2");
        let back = ring.unwrap(&wrapped, "usr_1").unwrap();
        assert_eq!(back.0, key.0);
        assert!(matches!(ring.unwrap(&wrapped, "usr_2"), Err(CryptoError::Authentication)));
        assert!(
            matches!(keyring("k2", 1).unwrap(&wrapped, "usr_1"), Err(CryptoError::UnknownMasterKey(id)) if id == "k1")
        );
        assert!(matches!(keyring("k1", 2).unwrap(&wrapped, "usr_1"), Err(CryptoError::Authentication)));
    }

    #[test]
    fn retired_keys_still_unwrap_and_index_while_new_wraps_use_the_current_one() {
        let old = MasterKey { id: "k1".into(), bytes: [1; 32] };
        let new = MasterKey { id: "k2".into(), bytes: [2; 32] };
        let before = Keyring::new(&old);
        let key = DataKey::generate();
        let wrapped_before = before.wrap(&key, "usr_1");
        let during = Keyring::with_retired(&new, std::slice::from_ref(&old));
        assert_eq!(during.current_id(), "k2");
        assert!(during.has_retired());
        assert_eq!(during.unwrap(&wrapped_before, "usr_1").unwrap().0, key.0);
        let rewrapped = during.wrap(&key, "usr_1");
        assert_eq!(rewrapped.master_key_id, "k2.v2");
        assert_eq!(
            during.retired_email_indexes("user@example.com"),
            vec![before.email_index("user@example.com")]
        );
        assert_ne!(during.email_index("user@example.com"), before.email_index("user@example.com"));
        let after = Keyring::new(&new);
        assert!(!after.has_retired());
        assert_eq!(after.unwrap(&rewrapped, "usr_1").unwrap().0, key.0);
        assert!(
            matches!(after.unwrap(&wrapped_before, "usr_1"), Err(CryptoError::UnknownMasterKey(id)) if id == "k1")
        );
    }

    #[test]
    fn legacy_wraps_by_the_master_key_itself_still_unwrap() {
        let ring = keyring("k1", 1);
        let key = DataKey::generate();
        // Exactly what an origin from before the derived wrapping key stored: the master key's
        // bytes as the AES key, the bare key id beside it.
        let master = Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(&[1; 32]));
        let legacy =
            WrappedKey { master_key_id: "k1".into(), sealed: seal_with(&master, &key.0, "usr_1/data-key") };
        assert!(ring.knows("k1") && ring.knows("k1.v2") && !ring.knows("k2") && !ring.knows("k2.v2"));
        assert_eq!(ring.unwrap(&legacy, "usr_1").unwrap().0, key.0);
        assert_eq!(ring.wrap_legacy(&key, "usr_1").master_key_id, "k1");
        assert_eq!(ring.unwrap(&ring.wrap_legacy(&key, "usr_1"), "usr_1").unwrap().0, key.0);
        // The format marker is part of what is checked: a legacy blob labelled as derived fails.
        let mislabelled = WrappedKey { master_key_id: "k1.v2".into(), sealed: legacy.sealed.clone() };
        assert!(matches!(ring.unwrap(&mislabelled, "usr_1"), Err(CryptoError::Authentication)));
    }

    #[test]
    fn new_wraps_use_a_derived_key_and_do_not_open_with_the_raw_master_key() {
        let ring = keyring("k1", 1);
        let key = DataKey::generate();
        let wrapped = ring.wrap(&key, "usr_1");
        assert_eq!(wrapped.master_key_id, ring.current_wrap_id());
        assert_eq!(master_key_id_of(&wrapped.master_key_id), "k1");
        let master = Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(&[1; 32]));
        assert!(matches!(
            open_with(&master, &wrapped.sealed, "usr_1/data-key"),
            Err(CryptoError::Authentication)
        ));
        let as_legacy = WrappedKey { master_key_id: "k1".into(), sealed: wrapped.sealed.clone() };
        assert!(matches!(ring.unwrap(&as_legacy, "usr_1"), Err(CryptoError::Authentication)));
        assert_eq!(ring.unwrap(&wrapped, "usr_1").unwrap().0, key.0);
    }

    #[test]
    fn a_legacy_wrap_rewrapped_opens_in_the_derived_format() {
        // What `rewrap-keys` does to a row (its job test runs it over a database).
        let ring = keyring("k1", 1);
        let key = DataKey::generate();
        let legacy = ring.wrap_legacy(&key, "usr_1");
        assert_ne!(legacy.master_key_id, ring.current_wrap_id(), "a legacy wrap is left for rewrap-keys");
        let rewrapped = ring.wrap(&ring.unwrap(&legacy, "usr_1").unwrap(), "usr_1");
        assert_eq!(rewrapped.master_key_id, "k1.v2");
        assert_eq!(ring.unwrap(&rewrapped, "usr_1").unwrap().0, key.0);
        // The blind index does not depend on the wrap format: existing rows stay findable.
        assert_eq!(ring.email_index("user@example.com"), keyring("k1", 1).email_index("user@example.com"));
    }

    #[test]
    fn the_blind_index_key_is_unchanged_by_the_derived_wrapping_key() {
        // Pinned: HMAC-SHA256 under HKDF(salt "user-management/origin", master [1; 32],
        // "blind-index/email/v1"), as computed before the wrapping key was derived. A change
        // here would make every existing row unfindable by email.
        let hk = Hkdf::<Sha256>::new(Some(b"user-management/origin"), &[1; 32]);
        let mut k = [0u8; 32];
        hk.expand(b"blind-index/email/v1", &mut k).unwrap();
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&k).unwrap();
        mac.update(b"user@example.com");
        assert_eq!(keyring("k1", 1).email_index("user@example.com"), mac.finalize().into_bytes().to_vec());
    }

    #[test]
    fn secret_macs_are_keyed_by_purpose_and_master_key() {
        let a = keyring("k1", 1);
        assert_eq!(a.secret_mac("recovery-code", b"X"), a.secret_mac("recovery-code", b"X"));
        assert_ne!(a.secret_mac("recovery-code", b"X"), a.secret_mac("device-token", b"X"));
        assert_ne!(a.secret_mac("recovery-code", b"X"), keyring("k1", 2).secret_mac("recovery-code", b"X"));
        let old = MasterKey { id: "k1".into(), bytes: [1; 32] };
        let during = Keyring::with_retired(&MasterKey { id: "k2".into(), bytes: [2; 32] }, &[old]);
        let macs = during.secret_macs("recovery-code", b"X");
        assert_eq!(macs, vec![during.secret_mac("recovery-code", b"X"), a.secret_mac("recovery-code", b"X")]);
    }

    #[test]
    fn the_blind_index_is_deterministic_and_keyed() {
        let a = keyring("k1", 1);
        assert_eq!(a.email_index("user@example.com"), a.email_index("user@example.com"));
        assert_ne!(a.email_index("user@example.com"), a.email_index("other@example.com"));
        assert_ne!(a.email_index("user@example.com"), keyring("k1", 2).email_index("user@example.com"));
        assert_eq!(a.email_index("x").len(), 32);
    }
}
