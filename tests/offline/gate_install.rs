//! The gate action's install step (`.github/actions/gate/install.sh`) against a release
//! served on loopback, as the runner would give it its environment: the release of the
//! action's ref is installed only when its checksum matches, a mismatch fails the step
//! (never a silent fallback), and a ref that names no release asks for a source build.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;

const REPOSITORY: &str = "acme/microseg";
const COMMIT: &str = "0123456789abcdef0123456789abcdef01234567";

fn version() -> String {
    let toml = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml")).unwrap();
    let package = toml.split("[workspace.package]").nth(1).unwrap();
    let line = package.lines().find(|l| l.starts_with("version")).unwrap();
    line.split('"').nth(1).unwrap().to_string()
}

/// Serves `dir` as `/<REPOSITORY>/releases/download/<file>` on a loopback port, on a
/// thread of its own, until the test process ends; anything else is a 404.
fn serve(dir: PathBuf) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut request = String::new();
            if BufReader::new(&stream).read_line(&mut request).is_err() {
                continue;
            }
            let path = request.split_whitespace().nth(1).unwrap_or_default();
            let prefix = format!("/{REPOSITORY}/releases/download/");
            let file = path.strip_prefix(&prefix).map(|rest| dir.join(rest)).filter(|f| f.is_file());
            let (status, body) = match file {
                Some(f) => ("200 OK", std::fs::read(f).unwrap()),
                None => ("404 Not Found", b"not found".to_vec()),
            };
            let head = format!("HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", body.len());
            let _ = stream.write_all(head.as_bytes()).and_then(|()| stream.write_all(&body));
        }
    });
    format!("http://{address}")
}

/// A release `tag` in `root/<tag>/`: a tarball per architecture whose `microseg` prints
/// `says`, their SHA256SUMS and SOURCE_COMMIT.
fn release(root: &Path, tag: &str, says: &str) {
    let dir = root.join(tag);
    std::fs::create_dir_all(&dir).unwrap();
    for arch in ["x86_64", "aarch64"] {
        let name = format!("microseg-{tag}-{arch}-linux");
        let unpacked = dir.join(&name);
        std::fs::create_dir_all(&unpacked).unwrap();
        let bin = unpacked.join("microseg");
        std::fs::write(&bin, format!("#!/bin/sh\necho '{says}'\n")).unwrap();
        let status = Command::new("chmod").arg("755").arg(&bin).status().unwrap();
        assert!(status.success());
        let tar =
            Command::new("tar").current_dir(&dir).args(["czf", &format!("{name}.tar.gz"), &name]).status().unwrap();
        assert!(tar.success());
        std::fs::remove_dir_all(&unpacked).unwrap();
    }
    let sums = Command::new("sh").current_dir(&dir).args(["-c", "sha256sum *.tar.gz > SHA256SUMS"]).status().unwrap();
    assert!(sums.success());
    std::fs::write(dir.join("SOURCE_COMMIT"), format!("{COMMIT}\n")).unwrap();
}

struct Installed {
    code: Option<i32>,
    outputs: BTreeMap<String, String>,
    log: String,
}

fn install(server: &str, action_ref: &str, arch: &str) -> Installed {
    let temp = tempfile::tempdir().unwrap();
    let output = temp.path().join("github-output");
    std::fs::write(&output, "").unwrap();
    let action = concat!(env!("CARGO_MANIFEST_DIR"), "/.github/actions/gate");
    let out = Command::new("bash")
        .arg(format!("{action}/install.sh"))
        .env("ACTION_REPOSITORY", REPOSITORY)
        .env("ACTION_REF", action_ref)
        .env("ACTION_PATH", action)
        .env("RUNNER_TEMP", temp.path())
        .env("RUNNER_OS", "Linux")
        .env("RUNNER_ARCH", arch)
        .env("GITHUB_SERVER_URL", server)
        .env("GITHUB_OUTPUT", &output)
        // The release is served on loopback: no proxy of this machine's in between.
        .env("NO_PROXY", "127.0.0.1")
        .env("no_proxy", "127.0.0.1")
        .output()
        .unwrap();
    let outputs = std::fs::read_to_string(&output)
        .unwrap()
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect::<BTreeMap<_, _>>();
    let log = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    // The binary lives in RUNNER_TEMP: run it before the directory goes.
    let log = match outputs.get("bin") {
        Some(bin) => {
            let ran = Command::new(bin).arg("--version").output().unwrap();
            format!("{log}ran: {}", String::from_utf8_lossy(&ran.stdout))
        }
        None => log,
    };
    Installed { code: out.status.code(), outputs, log }
}

#[test]
fn the_release_of_the_actions_ref_is_installed_only_with_a_matching_checksum() {
    let v = version();
    let tag = format!("v{v}");
    let root = tempfile::tempdir().unwrap();
    release(root.path(), &tag, &format!("microseg {v}"));
    let server = serve(root.path().to_path_buf());

    // By tag, on either architecture.
    for (arch, asset) in [("X64", "x86_64"), ("ARM64", "aarch64")] {
        let i = install(&server, &tag, arch);
        assert_eq!(i.code, Some(0), "{}", i.log);
        assert_eq!(i.outputs.get("how").map(String::as_str), Some("release"), "{}", i.log);
        assert!(i.outputs["bin"].ends_with(&format!("microseg-{tag}-{asset}-linux/microseg")), "{:?}", i.outputs);
        assert!(i.log.contains(&format!("ran: microseg {v}")), "{}", i.log);
        assert!(i.log.contains("matches the release's SHA256SUMS"), "{}", i.log);
    }

    // By commit: that release, when it was built from that very commit.
    let i = install(&server, COMMIT, "X64");
    assert_eq!(i.outputs.get("how").map(String::as_str), Some("release"), "{}", i.log);
    let other = "fedcba9876543210fedcba9876543210fedcba98";
    let i = install(&server, other, "X64");
    assert_eq!((i.code, i.outputs.get("how").map(String::as_str)), (Some(0), Some("source")), "{}", i.log);
    assert!(i.log.contains(&format!("was built from {COMMIT}, not {other}")), "{}", i.log);

    // A tarball that is not the one the checksums name: the step fails, nothing installed.
    let tarball = root.path().join(&tag).join(format!("microseg-{tag}-x86_64-linux.tar.gz"));
    let mut bytes = std::fs::read(&tarball).unwrap();
    bytes.extend_from_slice(b"tampered");
    std::fs::write(&tarball, bytes).unwrap();
    let i = install(&server, &tag, "X64");
    assert_eq!(i.code, Some(1), "{}", i.log);
    assert!(i.log.contains("the release's SHA256SUMS says") && i.log.contains("Not installed"), "{}", i.log);
    assert!(!i.outputs.contains_key("how") && !i.outputs.contains_key("bin"), "{:?}", i.outputs);
}

#[test]
fn a_release_binary_of_another_version_is_refused() {
    let v = version();
    let tag = format!("v{v}");
    let root = tempfile::tempdir().unwrap();
    release(root.path(), &tag, "microseg 0.0.0-other");
    let i = install(&serve(root.path().to_path_buf()), &tag, "X64");
    assert_eq!(i.code, Some(1), "{}", i.log);
    assert!(i.log.contains(&format!("says 'microseg 0.0.0-other', not 'microseg {v}'")), "{}", i.log);
    assert!(!i.outputs.contains_key("bin"));
}

#[test]
fn a_ref_without_a_release_asks_for_a_source_build_keyed_on_the_lock_file() {
    let root = tempfile::tempdir().unwrap();
    let server = serve(root.path().to_path_buf());
    let lock = Command::new("sha256sum").arg(concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.lock")).output().unwrap();
    let lock = String::from_utf8_lossy(&lock.stdout).split_whitespace().next().unwrap().to_string();
    for (action_ref, why) in [
        ("main", "names no release"),
        ("", "names no release"),
        (&format!("v{}", version()) as &str, "no release"),
        (COMMIT, "no release"),
    ] {
        let i = install(&server, action_ref, "X64");
        assert_eq!(i.code, Some(0), "{action_ref:?}: {}", i.log);
        assert_eq!(i.outputs.get("how").map(String::as_str), Some("source"), "{action_ref:?}: {}", i.log);
        assert!(i.log.contains(why), "{action_ref:?}: {}", i.log);
        assert_eq!(i.outputs["lock"], lock);
        assert_eq!(i.outputs["tree"].len(), 64, "{:?}", i.outputs);
        assert_eq!(Path::new(&i.outputs["src"]), Path::new(env!("CARGO_MANIFEST_DIR")));
    }
    // A runner releases have no binary for.
    let i = install(&server, &format!("v{}", version()), "ARM");
    assert!(i.log.contains("no binary for Linux/ARM"), "{}", i.log);
}
