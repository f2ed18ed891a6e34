//! The signature of a chronicle's seal: `RUN.cmeta.sig` beside the file, a
//! detached Ed25519 signature over the chronicle's 64-byte footer
//! (docs/bundles.md, "Signing a chronicle"). The footer holds the chain
//! head, which covers the run's header and every frame, so a chronicle
//! edited and re-chained from end to end — every CRC and link valid, and
//! undetectable by `verify` alone — no longer matches a signature made
//! before the edit.
//!
//! It owns the signed message and the file's first line; reading the
//! footer and checking the file's own integrity is the caller's.

use std::path::{Path, PathBuf};

use crate::keys::{read_small_file, PublicKey, SecretKey};
use crate::{BundleError, DetachedSignature};

/// The first line of a seal signature file.
pub const SEAL_SIGNATURE_HEADER: &str = "metagov-ed25519-seal-v1";

/// What is signed goes after this, so a seal signature can never be taken
/// for a signature of anything else (a manifest of 64 bytes, say).
const SEAL_DOMAIN: &[u8] = b"metagov chronicle seal v1\n";

/// The message a seal signature covers: the domain line and the footer.
#[must_use]
pub fn seal_message(footer: &[u8; 64]) -> Vec<u8> {
    [SEAL_DOMAIN, footer.as_slice()].concat()
}

/// `key`'s signature of the seal `footer`.
#[must_use]
pub fn sign_seal(key: &SecretKey, footer: &[u8; 64]) -> DetachedSignature {
    DetachedSignature::sign(key, &seal_message(footer))
}

/// Where the seal signature of `chronicle` lives: beside it, `.sig` added.
#[must_use]
pub fn seal_signature_path(chronicle: &Path) -> PathBuf {
    let mut name = chronicle.as_os_str().to_owned();
    name.push(".sig");
    PathBuf::from(name)
}

/// Reads a seal signature file.
///
/// # Errors
///
/// The file cannot be read, is too large, or is not a seal signature (the
/// line at fault named).
pub fn read_seal_signature(path: &Path) -> Result<DetachedSignature, BundleError> {
    let text = read_small_file(path)?;
    DetachedSignature::parse_with(SEAL_SIGNATURE_HEADER, text.into_bytes()).map_err(|e| e.in_file(path))
}

/// What a seal signature says of a footer, against the key the caller
/// pins (if any).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SealCheck {
    /// Made by the pinned key (or, unpinned, by the key it names) over
    /// exactly this footer.
    Valid,
    /// Made by another key than the pinned one: its fingerprint.
    OtherKey(String),
    /// Not a valid signature of this footer: the file changed after it was
    /// signed, or the signature was edited.
    Invalid,
}

/// Checks `signature` against `footer`, and against `pinned` when given.
#[must_use]
pub fn check_seal(signature: &DetachedSignature, footer: &[u8; 64], pinned: Option<&PublicKey>) -> SealCheck {
    if pinned.is_some_and(|pinned| *pinned != signature.key) {
        return SealCheck::OtherKey(signature.key.fingerprint());
    }
    if signature.verifies(&seal_message(footer)) {
        SealCheck::Valid
    } else {
        SealCheck::Invalid
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_seal_signature_covers_every_footer_byte_and_names_another_signer() {
        let key = SecretKey::from_seed([3; 32]);
        let footer = [7u8; 64];
        let signature = sign_seal(&key, &footer);
        let parsed =
            DetachedSignature::parse_with(SEAL_SIGNATURE_HEADER, signature.to_bytes_with(SEAL_SIGNATURE_HEADER));
        assert_eq!(parsed.as_ref(), Ok(&signature));
        assert_eq!(check_seal(&signature, &footer, Some(&key.public())), SealCheck::Valid);
        assert_eq!(check_seal(&signature, &footer, None), SealCheck::Valid);
        for i in 0..64 {
            let mut edited = footer;
            edited[i] ^= 1;
            assert_eq!(check_seal(&signature, &edited, None), SealCheck::Invalid, "byte {i}");
        }
        let other = SecretKey::from_seed([4; 32]).public();
        assert_eq!(check_seal(&signature, &footer, Some(&other)), SealCheck::OtherKey(key.public().fingerprint()));
        // A manifest signature is not a seal signature, and the other way round.
        assert!(DetachedSignature::parse(signature.to_bytes_with(SEAL_SIGNATURE_HEADER)).is_err());
        assert!(!signature.verifies(&footer), "the domain line is part of the message");
        assert_eq!(seal_signature_path(Path::new("run/run.cmeta")), PathBuf::from("run/run.cmeta.sig"));
    }

    /// The worked example of docs/bundles.md, "Signing a chronicle": the
    /// footer of the worked example of docs/chronicle-format.md, signed by
    /// the key whose seed is 32 bytes of 0x01.
    #[test]
    fn worked_example_seal_signature() {
        let footer: [u8; 64] = hex::decode(
            "636d46540100000003000000000000009f010000000000006288ae2d1f4650c16f317353adeb466d\
             e4a43c4e22a29556ad8e72d648df3feb38b02a176b2a4c42",
        )
        .unwrap()
        .try_into()
        .unwrap();
        let signature = sign_seal(&SecretKey::from_seed([1; 32]), &footer);
        let text = String::from_utf8(signature.to_bytes_with(SEAL_SIGNATURE_HEADER)).unwrap();
        assert_eq!(text, WORKED_EXAMPLE, "got:\n{text}");
    }

    const WORKED_EXAMPLE: &str = "metagov-ed25519-seal-v1
8a88e3dd7409f195fd52db2d3cba5d72ca6709bf1d94121bf3748801b40f6f5c
061d131f73db860079fde861a2164d83736069e96eaf0c3da800d6da224e1195e68f3c89c869d95c26093729b4b543999a55aacf7b609502ec77a3fefafaa80e
";
}
