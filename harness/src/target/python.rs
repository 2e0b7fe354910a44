//! A Python new enough for an emulator, and the cached venv each emulator runs from.
//!
//! Each Python emulator microseg starts ([`VenvSpec`]: LocalStack, moto, localemu) has a
//! full `pip freeze` in the repository, installed with `--no-deps` and proved complete
//! with `pip check`, into a venv of its own. LocalStack 4.14.0's stores use PEP 695
//! syntax, so 3.11 starts EC2 and then fails in CloudWatch (docs/EMULATOR.md, "Python ≥
//! 3.12"); localemu needs 3.13 (docs/EMULATOR.md, "localemu 1.3.2 as a target"). We look
//! for an interpreter in this order:
//! `MICROSEG_PYTHON`, `python3.13`/`python3.12`/`python3` on `PATH`, then pyenv's
//! versions. Each candidate is *run* to read its version, because a pyenv shim exists on
//! `PATH` even when it refuses to run.
//!
//! The venv lives under the cache directory, keyed by the SHA-256 of the pinned
//! requirements and the interpreter's minor version. A file lock serialises two processes
//! that bootstrap at once; a `.ready` marker, written last, tells a complete venv from one
//! that a killed install left half-done.

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use super::TargetError;

/// The pinned requirements, embedded so the binary works from any directory.
pub const REQUIREMENTS: &str = include_str!("../../../localstack/requirements.txt");

/// The LocalStack version the requirements pin.
pub const LOCALSTACK_VERSION: &str = "4.14.0";

/// A pinned emulator package set and the Python it needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VenvSpec<'a> {
    /// Short name, the start of the venv's directory name (`localstack`, `moto`, `localemu`).
    pub name: &'a str,
    /// The emulator's version the requirements pin.
    pub version: &'a str,
    /// The full `pip freeze`, embedded so the binary works from any directory.
    pub requirements: &'a str,
    /// The oldest Python `(major, minor)` it runs on.
    pub min_python: (u32, u32),
    /// The requirement line that pins the emulator itself (checked by a test).
    pub pin: &'a str,
}

/// LocalStack 4.14.0 (`localstack/requirements.txt`), Python ≥ 3.12.
pub const LOCALSTACK: VenvSpec<'static> = VenvSpec {
    name: "localstack",
    version: LOCALSTACK_VERSION,
    requirements: REQUIREMENTS,
    min_python: (3, 12),
    pin: "localstack-core==4.14.0",
};

/// moto's server 5.2.5 (`emulators/moto/requirements.txt`).
pub const MOTO: VenvSpec<'static> = VenvSpec {
    name: "moto",
    version: "5.2.5",
    requirements: include_str!("../../../emulators/moto/requirements.txt"),
    min_python: (3, 12),
    pin: "moto==5.2.5",
};

/// localemu 1.3.2 (`emulators/localemu/requirements.txt`); it imports
/// `warnings.deprecated`, new in Python 3.13.
pub const LOCALEMU: VenvSpec<'static> = VenvSpec {
    name: "localemu",
    version: "1.3.2",
    requirements: include_str!("../../../emulators/localemu/requirements.txt"),
    min_python: (3, 13),
    pin: "localemu==1.3.2",
};

/// An interpreter that was run and reported its version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Python {
    /// Path to the executable.
    pub path: PathBuf,
    /// `(major, minor)`.
    pub version: (u32, u32),
}

/// Finds a Python ≥ 3.12 (LocalStack's), or says where it looked.
pub fn find_python() -> Result<Python, TargetError> {
    find_python_for(&LOCALSTACK)
}

/// Finds a Python new enough for `spec`, or says where it looked.
pub fn find_python_for(spec: &VenvSpec<'_>) -> Result<Python, TargetError> {
    let min = spec.min_python;
    let mut tried = Vec::new();
    let mut candidates: Vec<PathBuf> = Vec::new();
    if let Some(p) = std::env::var_os("MICROSEG_PYTHON") {
        candidates.push(PathBuf::from(p));
    }
    for name in ["python3.14", "python3.13", "python3.12", "python3"] {
        candidates.push(PathBuf::from(name));
    }
    let pyenv_root =
        std::env::var_os("PYENV_ROOT").map(PathBuf::from).or_else(|| dirs::home_dir().map(|h| h.join(".pyenv")));
    if let Some(root) = pyenv_root
        && let Ok(entries) = fs::read_dir(root.join("versions"))
    {
        let mut versions: Vec<PathBuf> = entries.flatten().map(|e| e.path()).collect();
        versions.sort();
        versions.reverse();
        candidates.extend(versions.into_iter().map(|v| v.join("bin/python3")));
    }
    for candidate in candidates {
        match version_of(&candidate) {
            Some(version) if version >= min => return Ok(Python { path: candidate, version }),
            Some((major, minor)) => tried.push(format!("{} is {major}.{minor}", candidate.display())),
            None => tried.push(format!("{} does not run", candidate.display())),
        }
    }
    Err(TargetError::NoPython { emulator: spec.name.to_string(), min: format!("{}.{}", min.0, min.1), tried })
}

fn version_of(python: &Path) -> Option<(u32, u32)> {
    let out = Command::new(python)
        .args(["-c", "import sys; print(sys.version_info[0], sys.version_info[1])"])
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let mut it = text.split_whitespace().map(|n| n.parse::<u32>().ok());
    Some((it.next()??, it.next()??))
}

/// microseg's cache directory: `MICROSEG_CACHE_DIR`, else the user's cache dir.
pub fn cache_dir() -> PathBuf {
    std::env::var_os("MICROSEG_CACHE_DIR")
        .map(PathBuf::from)
        .or_else(|| dirs::cache_dir().map(|d| d.join("microseg")))
        .unwrap_or_else(|| std::env::temp_dir().join("microseg-cache"))
}

/// A ready venv, and whether this call had to build it.
#[derive(Debug, Clone)]
pub struct Venv {
    /// The venv's root.
    pub dir: PathBuf,
    /// Its Python.
    pub python: PathBuf,
    /// Time spent installing; zero when it was already cached.
    pub install_time: Duration,
}

/// The LocalStack venv directory for a requirements text and interpreter.
pub fn venv_dir(requirements: &str, python: &Python) -> PathBuf {
    venv_dir_for(&VenvSpec { requirements, ..LOCALSTACK }, python)
}

/// The venv directory of an emulator for an interpreter: keyed by the emulator, its
/// version, the interpreter's minor version and the requirements' SHA-256.
pub fn venv_dir_for(spec: &VenvSpec<'_>, python: &Python) -> PathBuf {
    let hash = hex::encode(Sha256::digest(spec.requirements.as_bytes()));
    cache_dir().join(format!(
        "{}-{}-py{}{}-{}",
        spec.name,
        spec.version,
        python.version.0,
        python.version.1,
        &hash[..16]
    ))
}

/// Returns the cached LocalStack venv, building it first if needed.
pub fn ensure_venv(python: &Python) -> Result<Venv, TargetError> {
    ensure_venv_for(&LOCALSTACK, python)
}

/// Returns the cached venv of an emulator, building it first if needed. Safe when
/// several processes call it at once: the first builds while the others wait on the lock.
pub fn ensure_venv_for(spec: &VenvSpec<'_>, python: &Python) -> Result<Venv, TargetError> {
    let dir = venv_dir_for(spec, python);
    let venv_python = dir.join("bin/python");
    let ready = dir.join(".ready");
    if ready.exists() {
        return Ok(Venv { dir, python: venv_python, install_time: Duration::ZERO });
    }
    let parent = dir.parent().expect("venv dir has a parent");
    fs::create_dir_all(parent).map_err(|e| TargetError::io("create the cache directory", parent, e))?;
    // Appended, not `with_extension`: the directory name itself contains dots.
    let lock_path = PathBuf::from(format!("{}.lock", dir.display()));
    let lock = File::create(&lock_path).map_err(|e| TargetError::io("create the venv lock", &lock_path, e))?;
    lock.lock().map_err(|e| TargetError::io("lock the venv", &lock_path, e))?;
    // Another process may have finished while we waited for the lock.
    if ready.exists() {
        return Ok(Venv { dir, python: venv_python, install_time: Duration::ZERO });
    }
    let started = Instant::now();
    if dir.exists() {
        // A half-built venv from a killed install: start over.
        fs::remove_dir_all(&dir).map_err(|e| TargetError::io("remove a half-built venv", &dir, e))?;
    }
    let log_path = PathBuf::from(format!("{}.install.log", dir.display()));
    run_logged(Command::new(&python.path).arg("-m").arg("venv").arg(&dir), &log_path, "python -m venv")?;
    let req_path = dir.join("requirements.txt");
    fs::write(&req_path, spec.requirements).map_err(|e| TargetError::io("write requirements", &req_path, e))?;
    // --no-deps: the file pins the whole closure; pip check proves it is complete.
    run_logged(
        Command::new(&venv_python)
            .args(["-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--no-deps", "-r"])
            .arg(&req_path),
        &log_path,
        &format!("pip install -r {} requirements", spec.name),
    )?;
    run_logged(
        Command::new(&venv_python).args(["-m", "pip", "check", "--disable-pip-version-check"]),
        &log_path,
        "pip check",
    )?;
    fs::write(&ready, spec.version).map_err(|e| TargetError::io("mark the venv ready", &ready, e))?;
    drop(lock);
    Ok(Venv { dir, python: venv_python, install_time: started.elapsed() })
}

fn run_logged(cmd: &mut Command, log_path: &Path, what: &str) -> Result<(), TargetError> {
    let log = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log_path)
        .map_err(|e| TargetError::io("open the install log", log_path, e))?;
    let status = cmd
        .stdout(log.try_clone().map_err(|e| TargetError::io("open the install log", log_path, e))?)
        .stderr(log)
        .status()
        .map_err(|e| TargetError::io(what, log_path, e))?;
    if status.success() {
        Ok(())
    } else {
        Err(TargetError::Bootstrap { step: what.to_string(), log: log_path.to_path_buf(), tail: tail_of(log_path, 20) })
    }
}

/// The last `lines` lines of a file, for error messages.
pub fn tail_of(path: &Path, lines: usize) -> String {
    let text = fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn venv_key_changes_with_requirements_and_interpreter() {
        let p312 = Python { path: "x".into(), version: (3, 12) };
        let p313 = Python { path: "x".into(), version: (3, 13) };
        assert_ne!(venv_dir("a==1", &p312), venv_dir("a==2", &p312));
        assert_ne!(venv_dir("a==1", &p312), venv_dir("a==1", &p313));
        assert_eq!(venv_dir("a==1", &p312), venv_dir("a==1", &p312));
    }

    #[test]
    fn each_emulator_pins_itself_in_a_venv_of_its_own() {
        let p313 = Python { path: "x".into(), version: (3, 13) };
        for spec in [LOCALSTACK, MOTO, LOCALEMU] {
            assert!(spec.requirements.lines().any(|l| l == spec.pin), "{} does not pin {}", spec.name, spec.pin);
            let dir = venv_dir_for(&spec, &p313);
            let name = dir.file_name().unwrap().to_string_lossy().to_string();
            assert!(name.starts_with(&format!("{}-{}-py313-", spec.name, spec.version)), "{name}");
        }
        // moto's server needs its extras, and localemu needs 3.13 (warnings.deprecated).
        assert!(MOTO.requirements.lines().any(|l| l.starts_with("Flask==")), "moto[server] pulls in flask");
        assert_eq!(LOCALEMU.min_python, (3, 13));
        // The LocalStack venv keeps its name, so a cached one is still found.
        assert!(
            venv_dir(REQUIREMENTS, &p313)
                .file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("localstack-4.14.0-py313-")
        );
    }

    #[test]
    fn requirements_pin_the_emulator_and_the_known_breakages() {
        assert!(REQUIREMENTS.lines().any(|l| l == format!("localstack-core=={LOCALSTACK_VERSION}")));
        for pin in ["cbor2==5.7", "pyOpenSSL==24.", "cryptography==44.", "service-identity=="] {
            assert!(REQUIREMENTS.lines().any(|l| l.starts_with(pin)), "{pin}");
        }
    }
}
