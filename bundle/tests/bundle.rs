//! The worked example of docs/bundles.md as a golden test: the key of RFC
//! 8032's first test vector, a two-file directory, and the exact manifest,
//! signature and zip bytes it gives. A change here changes every bundle a
//! user has made: the document and its version must change with it.

use std::io::Cursor;
use std::path::Path;

use metagov_bundle::{pack, verify, DetachedSignature, Plan, SecretKey, Signer};

const SEED: &str = "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60";

const MANIFEST: &str = "\
5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03  logs/run.log
b3fd71ddb8fa23727638aed7cb2d9e922d38a0b0fb045a886dc1d462132e3c33  summary.json
";

const SIGNATURE: &str = "\
metagov-ed25519-signature-v1
d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a
83c005ae1c826d214fb617514d4e1674ff73fbe3719aaf016877137b5740e0f7248f44484c48b76d0f146adccbc7c8ae790b221a459d89a43bd57efb8621150e
";

/// The SHA-256 of the whole zip.
const ZIP_SHA256: &str = "29ec6651f060974cd124bf150c92687d0ec1b9b5a96f1d7f1764b5f261e53e4d";

fn key() -> SecretKey {
    let mut seed = [0; 32];
    for (i, byte) in seed.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&SEED[2 * i..2 * i + 2], 16).unwrap();
    }
    SecretKey::from_seed(seed)
}

fn example_dir(root: &Path) -> std::path::PathBuf {
    let dir = root.join("run");
    std::fs::create_dir_all(dir.join("logs")).unwrap();
    std::fs::write(dir.join("logs/run.log"), "hello\n").unwrap();
    std::fs::write(dir.join("summary.json"), "{\"packets\": 3}\n").unwrap();
    dir
}

#[test]
fn the_worked_example_gives_the_documented_bytes() {
    let root = tempfile::tempdir().unwrap();
    let plan = Plan::scan(&example_dir(root.path())).unwrap();
    let mut zip = Cursor::new(Vec::new());
    let packed = pack(&plan, Some(&key()), &mut zip, Path::new("run.zip"), &mut |_, _| {}).unwrap();
    assert_eq!(packed.manifest_sha256, metagov_bundle::sha256_hex(MANIFEST.as_bytes()));
    assert_eq!(
        DetachedSignature::sign(&key(), MANIFEST.as_bytes()).to_bytes(),
        SIGNATURE.as_bytes(),
        "Ed25519 is deterministic: the same key and manifest give the same signature"
    );
    assert_eq!(metagov_bundle::sha256_hex(zip.get_ref()), ZIP_SHA256);
    assert_eq!(key().public().fingerprint(), "SHA256:21fe31dfa154a261");

    zip.set_position(0);
    let report = verify(zip, Path::new("run.zip"), Some(&key().public()), &mut |_, _| {}).unwrap();
    assert_eq!(report.findings, []);
    assert_eq!(report.signer, Signer::Valid { key: key().public(), pinned: true });
    assert_eq!((report.files, report.bytes), (2, 21));
}

#[test]
fn progress_counts_every_byte_once() {
    let root = tempfile::tempdir().unwrap();
    let plan = Plan::scan(&example_dir(root.path())).unwrap();
    let mut seen = Vec::new();
    let mut zip = Cursor::new(Vec::new());
    pack(&plan, None, &mut zip, Path::new("run.zip"), &mut |done, total| seen.push((done, total))).unwrap();
    assert_eq!(seen, [(6, 21), (21, 21)]);
}
