//! `manifest.sha256.sig`: the detached Ed25519 signature over the exact
//! bytes of `manifest.sha256` (docs/bundles.md, "The signature"). Three
//! lines: `metagov-ed25519-signature-v1`, the signer's public key (64 hex
//! digits), the signature (128 hex digits).

use crate::keys::{decode_hex, text, text_lines, PublicKey, SecretKey};
use crate::LineError;

/// The first line of a signature file.
pub const SIGNATURE_HEADER: &str = "metagov-ed25519-signature-v1";

/// A signature and the key that says it made it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DetachedSignature {
    /// The public key the file names as the signer's.
    pub key: PublicKey,
    /// The 64 signature bytes.
    pub signature: [u8; 64],
}

impl DetachedSignature {
    /// `key`'s signature of `manifest` (the manifest file's bytes).
    pub fn sign(key: &SecretKey, manifest: &[u8]) -> DetachedSignature {
        DetachedSignature { key: key.public(), signature: key.sign(manifest) }
    }

    /// True when the signature is the named key's over `manifest`.
    pub fn verifies(&self, manifest: &[u8]) -> bool {
        self.key.verifies(manifest, &self.signature)
    }

    /// The manifest signature file's bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        self.to_bytes_with(SIGNATURE_HEADER)
    }

    /// Parses a manifest signature file's bytes.
    pub fn parse(bytes: Vec<u8>) -> Result<DetachedSignature, LineError> {
        Self::parse_with(SIGNATURE_HEADER, bytes)
    }

    /// The bytes of a signature file whose first line is `header` (which
    /// says what was signed: a manifest, a chronicle's seal).
    pub fn to_bytes_with(&self, header: &str) -> Vec<u8> {
        format!("{header}\n{}\n{}\n", self.key.hex(), hex::encode(self.signature)).into_bytes()
    }

    /// Parses a signature file whose first line must be `header`.
    pub fn parse_with(header: &str, bytes: Vec<u8>) -> Result<DetachedSignature, LineError> {
        let error = |line, reason: String| LineError { line, reason };
        let text = text(bytes)?;
        let lines = text_lines(&text)?;
        if lines.first().copied() != Some(header) {
            return Err(error(1, format!("expected `{header}`")));
        }
        let key_hex = lines.get(1).ok_or_else(|| error(2, "missing: the signer's public key".into()))?;
        let key_bytes = decode_hex::<32>(key_hex).map_err(|reason| error(2, format!("the public key: {reason}")))?;
        let key = PublicKey::from_bytes(&key_bytes).map_err(|reason| error(2, reason))?;
        let signature_hex = lines.get(2).ok_or_else(|| error(3, "missing: the signature".into()))?;
        let signature =
            decode_hex::<64>(signature_hex).map_err(|reason| error(3, format!("the signature: {reason}")))?;
        if lines.len() > 3 {
            return Err(error(4, "unexpected: a signature file has three lines".into()));
        }
        Ok(DetachedSignature { key, signature })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signature_round_trips_and_covers_every_byte() {
        let key = SecretKey::from_seed([7; 32]);
        let signed = DetachedSignature::sign(&key, b"manifest\n");
        let parsed = DetachedSignature::parse(signed.to_bytes()).unwrap();
        assert_eq!(parsed, signed);
        assert!(parsed.verifies(b"manifest\n"));
        assert!(!parsed.verifies(b"manifesT\n"));
        let other = SecretKey::from_seed([8; 32]);
        let forged = DetachedSignature { key: other.public(), ..signed };
        assert!(!forged.verifies(b"manifest\n"));
    }

    #[test]
    fn a_bad_signature_file_names_its_line() {
        let good = String::from_utf8(DetachedSignature::sign(&SecretKey::from_seed([7; 32]), b"m").to_bytes()).unwrap();
        let lines: Vec<&str> = good.lines().collect();
        let cases = [
            (String::from("metagov-ed25519-signature-v2\n"), 1),
            (format!("{}\n", lines[0]), 2),
            (format!("{}\n{}x\n{}\n", lines[0], &lines[1][1..], lines[2]), 2),
            (format!("{}\n{}\n", lines[0], lines[1]), 3),
            (format!("{}\n{}\n{}\n", lines[0], lines[1], &lines[2][2..]), 3),
            (format!("{good}extra\n"), 4),
        ];
        for (text, line) in cases {
            let error = DetachedSignature::parse(text.clone().into_bytes()).expect_err(&text);
            assert_eq!(error.line, line, "{text:?}: {error}");
        }
    }
}
