//! `metagov keygen`, `metagov bundle DIR`, `metagov bundle verify` and
//! `metagov sign`: the shell around `metagov_bundle` (docs/bundles.md). It draws a new key's
//! randomness from the operating system, draws the progress bars, prints
//! the reports and decides the exit code; it never prints a secret key.

use std::fs;
use std::io::{BufReader, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use metagov_bundle::keys::{self, PublicKey, SecretKey};
use metagov_bundle::{Plan, Signer};

use super::{counted, progress, Escaped, Outcome, OutputFile};

/// Below this many bytes no progress bar is drawn: the command is done
/// before it would show.
const BAR_BYTES_MIN: u64 = 64 << 20;

/// `metagov bundle`: pack a directory, or check a bundle.
#[derive(clap::Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct BundleArgs {
    #[command(subcommand)]
    command: Option<BundleCommand>,
    /// The directory to pack: every regular file under it, recursively
    /// (symbolic links and other special files are refused, naming them).
    #[arg(required = true)]
    dir: Option<PathBuf>,
    /// The bundle to write (replaced if it exists; written beside it and
    /// renamed into place, so a failed run leaves nothing half-written).
    /// It must lie outside DIR.
    #[arg(short, long, value_name = "BUNDLE.zip", required = true)]
    output: Option<PathBuf>,
    /// Sign the manifest with this secret key file (from `metagov keygen`):
    /// the bundle then holds manifest.sha256.sig.
    #[arg(long, value_name = "KEY")]
    key: Option<PathBuf>,
    /// No progress bar.
    #[arg(long, short)]
    quiet: bool,
}

#[derive(clap::Subcommand)]
enum BundleCommand {
    /// Check a bundle: every file against manifest.sha256, and the
    /// manifest against its signature.
    ///
    /// Prints one line per problem, each naming the file: ADDED (in the zip,
    /// not in the manifest), REMOVED (in the manifest, not in the zip),
    /// CHANGED (its SHA-256 differs), CORRUPT (the zip entry cannot be
    /// decompressed), MANIFEST (missing, or a line that does not parse,
    /// with its number), SIGNATURE (missing while --pubkey is given, made
    /// by another key than --pubkey, or not valid for the manifest's
    /// bytes). Exits 0 when everything checks, 1 otherwise.
    ///
    /// Without --pubkey, a signed bundle's signature is checked against the
    /// public key written in it, which proves only that whoever holds that
    /// key's secret signed it: the output says the signer is not pinned.
    Verify {
        /// The bundle (.zip) to check.
        #[arg(value_name = "BUNDLE.zip")]
        bundle: PathBuf,
        /// Require a valid signature by this public key (a KEY.pub file
        /// from `metagov keygen`): an unsigned bundle, or one signed by
        /// any other key, fails.
        #[arg(long, value_name = "KEY.pub")]
        pubkey: Option<PathBuf>,
        /// No progress bar.
        #[arg(long, short)]
        quiet: bool,
    },
}

/// A bundle error with its causes, escaped for the terminal: a file name
/// in it may hold any character but `/` and NUL.
pub(super) fn escaped(e: metagov_bundle::BundleError) -> anyhow::Error {
    anyhow::anyhow!("{}", Escaped(format!("{:#}", anyhow::Error::from(e))))
}

/// Runs `metagov bundle …`.
pub fn run(args: BundleArgs, out: &mut dyn Write) -> Result<Outcome> {
    match (args.command, args.dir, args.output) {
        (Some(BundleCommand::Verify { bundle, pubkey, quiet }), _, _) => verify(&bundle, pubkey.as_deref(), quiet, out),
        (None, Some(dir), Some(output)) => pack(&dir, &output, args.key.as_deref(), args.quiet, out),
        // Invariant: clap requires DIR and --output when no subcommand is given.
        (None, _, _) => unreachable!("clap requires DIR and --output"),
    }
}

/// `metagov keygen -o KEY`: a new key pair from the operating system's
/// randomness, in KEY (mode 0600) and KEY.pub; neither may exist.
pub fn keygen(secret: &Path, out: &mut dyn Write) -> Result<Outcome> {
    let mut seed = [0u8; 32];
    getrandom::fill(&mut seed).map_err(|e| anyhow::anyhow!("cannot draw randomness for a new key: {e}"))?;
    let key = SecretKey::from_seed(seed);
    seed.fill(0);
    let pair = keys::write_new_pair(secret, &key).map_err(escaped)?;
    writeln!(out, "public key   {}", Escaped(pair.public.display()))?;
    writeln!(out, "fingerprint  {}", pair.key.fingerprint())?;
    Ok(Outcome::Success)
}

fn pack(dir: &Path, output: &Path, key: Option<&Path>, quiet: bool, out: &mut dyn Write) -> Result<Outcome> {
    let key = key.map(SecretKey::read).transpose().map_err(escaped)?;
    let plan = Plan::scan(dir).map_err(escaped)?;
    refuse_output_inside(dir, output)?;
    let bar = progress::bytes_bar(plan.bytes(), !quiet && plan.bytes() >= BAR_BYTES_MIN, "bundling");
    let mut file = OutputFile::create(dir, output)?;
    let packed =
        metagov_bundle::pack(&plan, key.as_ref(), file.seekable(), output, &mut |done, _| bar.set_position(done))
            .map_err(escaped)?;
    bar.finish_and_clear();
    file.commit()?;
    writeln!(out, "bundle       {}", Escaped(output.display()))?;
    writeln!(out, "files        {} ({} bytes)", packed.files, packed.bytes)?;
    writeln!(out, "manifest     sha256 {}", packed.manifest_sha256)?;
    match packed.signer {
        Some(signer) => writeln!(out, "signed       yes, by {}", signer.fingerprint())?,
        None => writeln!(out, "signed       no (pass --key KEY to sign)")?,
    }
    Ok(Outcome::Success)
}

/// A bundle that was written and then read back whole.
pub(super) struct CheckedBundle {
    /// Files packed (besides the manifest and signature).
    pub files: u64,
    /// The SHA-256 of its manifest, hex.
    pub manifest_sha256: String,
    /// The signature as the check found it: `valid, by SHA256:…` or
    /// `unsigned`.
    pub signature: String,
}

/// Packs `plan` (a scan of `dir`) into the bundle `to`, signed with `key`
/// when given, then reads it back and checks it as `bundle verify` does:
/// every file against the manifest, and the signature against `key`'s
/// public half.
///
/// # Errors
///
/// The bundle cannot be written or read, or it does not check out (its
/// findings named).
pub(super) fn pack_checked(dir: &Path, plan: &Plan, to: &Path, key: Option<&SecretKey>) -> Result<CheckedBundle> {
    let mut file = OutputFile::create(dir, to)?;
    let packed = metagov_bundle::pack(plan, key, file.seekable(), to, &mut |_, _| {}).map_err(escaped)?;
    file.commit()?;
    let written = fs::File::open(to).with_context(|| format!("cannot open {}", Escaped(to.display())))?;
    let pinned = key.map(SecretKey::public);
    let check =
        metagov_bundle::verify(BufReader::new(written), to, pinned.as_ref(), &mut |_, _| {}).map_err(escaped)?;
    anyhow::ensure!(
        check.findings.is_empty() && check.files == packed.files,
        "the bundle {} just written does not check out: {}",
        Escaped(to.display()),
        Escaped(check.findings.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))
    );
    let signature = match check.signer {
        Signer::Valid { key, .. } => format!("valid, by {}", key.fingerprint()),
        Signer::Unsigned => "unsigned".to_owned(),
        // Invariant: a failed signature check is always a finding, refused above.
        Signer::Failed => unreachable!("a failed signature comes with a finding"),
    };
    Ok(CheckedBundle { files: packed.files, manifest_sha256: packed.manifest_sha256, signature })
}

/// A bundle written inside the directory it packs would be packed by the
/// next run: refused.
fn refuse_output_inside(dir: &Path, output: &Path) -> Result<()> {
    let parent = match output.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let (Ok(dir), Ok(parent)) = (fs::canonicalize(dir), fs::canonicalize(parent)) else {
        // A parent that does not exist is reported when the output is created.
        return Ok(());
    };
    anyhow::ensure!(
        !parent.starts_with(&dir),
        "refusing to write {} inside {}, the directory it packs; write it elsewhere",
        Escaped(output.display()),
        Escaped(dir.display())
    );
    Ok(())
}

fn verify(bundle: &Path, pubkey: Option<&Path>, quiet: bool, out: &mut dyn Write) -> Result<Outcome> {
    let pinned = pubkey.map(PublicKey::read).transpose().map_err(escaped)?;
    let file = fs::File::open(bundle).with_context(|| format!("cannot open {}", Escaped(bundle.display())))?;
    let size = file.metadata().map_or(0, |m| m.len());
    let bar = progress::bytes_bar(0, !quiet && size >= BAR_BYTES_MIN, "verifying");
    let report = metagov_bundle::verify(BufReader::new(file), bundle, pinned.as_ref(), &mut |done, total| {
        bar.set_length(total);
        bar.set_position(done);
    })
    .map_err(escaped)?;
    bar.finish_and_clear();
    let name = Escaped(bundle.display());
    if !report.findings.is_empty() {
        for finding in &report.findings {
            writeln!(out, "{}", Escaped(finding))?;
        }
        writeln!(out, "{name}: FAILED: {}", counted(report.findings.len() as u64, "problem"))?;
        return Ok(Outcome::Failure);
    }
    writeln!(
        out,
        "{name}: ok: {} ({} bytes) match{} manifest.sha256 (sha256 {})",
        counted(report.files, "file"),
        report.bytes,
        if report.files == 1 { "es" } else { "" },
        report.manifest_sha256.as_deref().unwrap_or("?")
    )?;
    match report.signer {
        Signer::Valid { key, pinned: true } => {
            writeln!(out, "signature    valid, by {} (the key given with --pubkey)", key.fingerprint())?
        }
        Signer::Valid { key, pinned: false } => writeln!(
            out,
            "signature    valid, by {}, but the signer is not pinned: pass --pubkey KEY.pub to require this key",
            key.fingerprint()
        )?,
        Signer::Unsigned => {
            writeln!(out, "signature    none: the manifest vouches that the files are whole, not who made the bundle")?
        }
        // Invariant: a failed signature check is always a finding, handled above.
        Signer::Failed => unreachable!("a failed signature comes with a finding"),
    }
    Ok(Outcome::Success)
}

/// The 64 footer bytes of a chronicle that `verify` found sealed: what its
/// seal signature covers.
fn footer_of(file: &Path) -> Result<[u8; 64]> {
    use std::io::{Read, Seek, SeekFrom};
    let mut footer = [0u8; 64];
    let mut read = || -> std::io::Result<()> {
        let mut f = fs::File::open(file)?;
        f.seek(SeekFrom::End(-64))?;
        f.read_exact(&mut footer)
    };
    read().with_context(|| format!("cannot read the footer of {}", Escaped(file.display())))?;
    Ok(footer)
}

/// `metagov sign RUN --key KEY`: writes `RUN.cmeta.sig`, the signature of
/// the sealed chronicle's footer (replacing an earlier one whole).
pub fn sign(file: &Path, key: &Path, out: &mut dyn Write) -> Result<Outcome> {
    let key = SecretKey::read(key).map_err(escaped)?;
    let signed = sign_sealed(file, &key)?;
    writeln!(out, "signed       {} (chain head {})", Escaped(file.display()), signed.chain_head)?;
    writeln!(out, "signature    {}", Escaped(signed.path.display()))?;
    writeln!(out, "by           {}", key.public().fingerprint())?;
    Ok(Outcome::Success)
}

/// A seal signature written.
pub struct SignedSeal {
    /// The signature file, `RUN.cmeta.sig`.
    pub path: PathBuf,
    /// The chain head it covers, hex.
    pub chain_head: String,
}

/// Checks that `file` is a sealed, intact chronicle (a damaged file is
/// never signed), then writes `RUN.cmeta.sig` beside it with `key`.
pub fn sign_sealed(file: &Path, key: &SecretKey) -> Result<SignedSeal> {
    let report =
        metagov_storage::verify_file(file).with_context(|| format!("cannot verify {}", Escaped(file.display())))?;
    anyhow::ensure!(
        matches!(report.status, metagov_storage::IntegrityStatus::Sealed),
        "{}: {}; only a sealed chronicle has a seal to sign",
        Escaped(file.display()),
        Escaped(&report.status)
    );
    write_seal_signature(file, key)
}

/// Writes `RUN.cmeta.sig` beside `file`, the signature of its last 64
/// bytes, its footer: only for a file `verify_file` found sealed.
pub(super) fn write_seal_signature(file: &Path, key: &SecretKey) -> Result<SignedSeal> {
    use metagov_bundle::seal::{seal_signature_path, sign_seal, SEAL_SIGNATURE_HEADER};
    let footer = footer_of(file)?;
    let signature = sign_seal(key, &footer);
    let path = seal_signature_path(file);
    let mut output = OutputFile::create(file, &path)?;
    output.writer().write_all(&signature.to_bytes_with(SEAL_SIGNATURE_HEADER))?;
    output.commit()?;
    Ok(SignedSeal { path, chain_head: footer[24..56].iter().map(|b| format!("{b:02x}")).collect() })
}

/// What `metagov verify --pubkey` found of a chronicle's seal signature:
/// one line for people, a status word for `--json`, and whether it passed.
pub struct SealVerdict {
    /// `valid`, `missing`, `other_key`, `invalid` or `unreadable`.
    pub status: &'static str,
    /// The line `verify` prints.
    pub line: String,
    /// The signer's fingerprint, when a signature was read.
    pub signer: Option<String>,
    /// Whether the signature is valid and by the pinned key.
    pub passed: bool,
}

/// Checks the seal signature beside `file`, which `verify` found sealed,
/// against `pubkey`.
pub fn check_seal_signature(file: &Path, pubkey: &Path) -> Result<SealVerdict> {
    use metagov_bundle::seal::{check_seal, read_seal_signature, seal_signature_path, SealCheck};
    let pinned = PublicKey::read(pubkey).map_err(escaped)?;
    let footer = footer_of(file)?;
    let path = seal_signature_path(file);
    if !path.exists() {
        let line =
            format!("seal signature: MISSING ({} does not exist; `metagov sign` writes it)", Escaped(path.display()));
        return Ok(SealVerdict { status: "missing", line, signer: None, passed: false });
    }
    let signature = match read_seal_signature(&path) {
        Ok(signature) => signature,
        Err(e) => {
            let line = format!("seal signature: UNREADABLE: {}", Escaped(e));
            return Ok(SealVerdict { status: "unreadable", line, signer: None, passed: false });
        }
    };
    let signer = signature.key.fingerprint();
    let check = check_seal(&signature, &footer, Some(&pinned));
    let passed = matches!(check, SealCheck::Valid);
    let (status, line) = match check {
        SealCheck::Valid => ("valid", format!("seal signature: valid, by {signer}")),
        SealCheck::OtherKey(other) => {
            ("other_key", format!("seal signature: made by {other}, not by the --pubkey key {}", pinned.fingerprint()))
        }
        SealCheck::Invalid => (
            "invalid",
            format!(
                "seal signature: INVALID: {signer}'s signature does not cover this seal; the file changed after it \
                 was signed (or the signature was edited)"
            ),
        ),
    };
    Ok(SealVerdict { status, line, signer: Some(signer), passed })
}
