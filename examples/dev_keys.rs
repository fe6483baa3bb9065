//! Generates a *development* signing key pair for trying frontdesk out: a PKCS#8 PEM private key
//! (mode 0600) and its public JWKS, and prints a `[[clients]]` snippet for `private_key_jwt`.
//! Never use these keys in production; frontdesk's own signing keys live sealed in its database.
//!
//! ```sh
//! keys/generate-dev-keys [ES256|RS256|PS256|EdDSA]
//! cargo run --quiet --example dev_keys -- keys/dev [ES256|RS256|PS256|EdDSA]
//! ```
//!
//! The output directory must be `keys/dev` (git-ignored) or lie inside the system temporary
//! directory, so a private key cannot land in a tracked folder by accident.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};
use std::process::ExitCode;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use frontdesk::keys::{PrivateKey, SigningAlgorithm};
use zeroize::Zeroizing;

const USAGE: &str =
    "usage: dev_keys DIR [ES256|RS256|PS256|EdDSA]  (DIR: .../keys/dev or a temp dir)";

fn main() -> ExitCode {
    match run(std::env::args().skip(1).collect()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("dev_keys: {message}");
            ExitCode::FAILURE
        }
    }
}

/// The whole program after argument collection: `DIR [ALG]`. Public so that
/// tests/dev_keys.rs can run it in-process.
pub fn run(args: Vec<String>) -> Result<(), String> {
    let (dir, algorithm) = match args.as_slice() {
        [dir] => (PathBuf::from(dir), SigningAlgorithm::Es256),
        [dir, alg] => (
            PathBuf::from(dir),
            SigningAlgorithm::parse(alg)
                .ok_or_else(|| format!("unknown algorithm {alg}\n{USAGE}"))?,
        ),
        _ => return Err(USAGE.into()),
    };
    check_destination(&dir)?;
    fs::create_dir_all(&dir)
        .map_err(|error| format!("cannot create {}: {error}", dir.display()))?;
    fs::set_permissions(&dir, fs::Permissions::from_mode(0o700))
        .map_err(|error| format!("cannot restrict {}: {error}", dir.display()))?;

    let key = PrivateKey::generate(algorithm, 2048)?;
    let jwk = key.public_jwk()?;
    let kid = jwk
        .common
        .key_id
        .clone()
        .ok_or("the generated key has no kid")?;
    let stem = format!("{algorithm}-{}", &kid[..8.min(kid.len())]);
    let pem_path = dir.join(format!("{stem}.pem"));
    let jwks_path = dir.join(format!("{stem}.jwks.json"));
    let jwks = serde_json::json!({ "keys": [jwk] });

    write_new(&pem_path, pem(key.pkcs8()).as_bytes(), 0o600)?;
    let pretty = serde_json::to_string_pretty(&jwks).map_err(|error| error.to_string())?;
    write_new(&jwks_path, format!("{pretty}\n").as_bytes(), 0o644)?;

    println!("private key (PKCS#8 PEM, 0600): {}", pem_path.display());
    println!("public JWKS:                    {}", jwks_path.display());
    println!("kid (RFC 7638 SHA-256 thumbprint): {kid}\n");
    println!("{pretty}\n");
    println!("# A private_key_jwt client of frontdesk using this key (paste into frontdesk.toml):");
    println!("[[clients]]");
    println!("client_id = \"dev-agent\"");
    println!("auth_method = \"private_key_jwt\"");
    println!("jwks = '{jwks}'");
    println!("audiences = []");
    Ok(())
}

/// Only `.../keys/dev` or a directory strictly inside the system temporary directory (and not
/// inside a git checkout there).
fn check_destination(dir: &Path) -> Result<(), String> {
    let parts: Vec<Component<'_>> = dir
        .components()
        .filter(|part| !matches!(part, Component::CurDir))
        .collect();
    let is_keys_dev = matches!(
        parts.as_slice(),
        [.., Component::Normal(keys), Component::Normal(dev)] if *keys == "keys" && *dev == "dev"
    ) && !parts.contains(&Component::ParentDir);
    if is_keys_dev || inside_temp_dir(dir) {
        return Ok(());
    }
    Err(format!(
        "refusing to write private keys to {}: use keys/dev (git-ignored) or a temporary directory",
        dir.display()
    ))
}

fn inside_temp_dir(dir: &Path) -> bool {
    let Ok(temp) = std::env::temp_dir().canonicalize() else {
        return false;
    };
    // The directory may not exist yet: resolve its nearest existing ancestor.
    let mut existing = dir;
    let mut rest = Vec::new();
    while !existing.exists() {
        let (Some(parent), Some(name)) = (existing.parent(), existing.file_name()) else {
            return false;
        };
        if name == ".." {
            return false;
        }
        rest.push(name);
        existing = if parent.as_os_str().is_empty() {
            Path::new(".")
        } else {
            parent
        };
    }
    let Ok(resolved) = existing.canonicalize() else {
        return false;
    };
    // Strictly inside: never the temporary directory itself, and never inside a git checkout
    // that happens to live in the temporary directory (a CI clone under /tmp).
    resolved.starts_with(&temp)
        && (resolved != temp || !rest.is_empty())
        && !resolved
            .ancestors()
            .any(|ancestor| ancestor.join(".git").exists())
}

fn pem(pkcs8: &[u8]) -> Zeroizing<String> {
    let encoded = Zeroizing::new(STANDARD.encode(pkcs8));
    let mut out = Zeroizing::new(String::from("-----BEGIN PRIVATE KEY-----\n"));
    for line in encoded.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(line));
        out.push('\n');
    }
    out.push_str("-----END PRIVATE KEY-----\n");
    out
}

/// Creates `path` with `mode`, refusing to overwrite an existing file.
fn write_new(path: &Path, contents: &[u8], mode: u32) -> Result<(), String> {
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(|error| format!("cannot create {}: {error}", path.display()))?;
    // The umask may have narrowed the mode; set it exactly.
    file.set_permissions(fs::Permissions::from_mode(mode))
        .map_err(|error| format!("cannot set the mode of {}: {error}", path.display()))?;
    file.write_all(contents)
        .and_then(|()| file.sync_all())
        .map_err(|error| format!("cannot write {}: {error}", path.display()))
}
