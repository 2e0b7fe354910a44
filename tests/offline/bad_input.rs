//! Every class of spec error names file, line, field and value, exits 2, and calls
//! nothing: the target given is a listener that counts connections.

use std::io::Write;
use std::net::TcpListener;
use std::process::Command;

use microseg_cli::exit;
use rstest::rstest;

/// Fourteen lines, so whatever a case appends starts on line 15.
const BASE: &str = r#"[scenario]
name = "t"
title = "t"
[vpc]
cidr = "10.0.0.0/16"
name = "v"
[[zones]]
name = "a"
cidr = "10.0.1.0/24"
subnet_name = "a"
nacl = "a"
[[nacls]]
name = "a"
tag_name = "a"
"#;

/// A loopback listener that records whether anything connected.
struct Counter(TcpListener);

impl Counter {
    fn new() -> Counter {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.set_nonblocking(true).unwrap();
        Counter(l)
    }
    fn url(&self) -> String {
        format!("http://{}", self.0.local_addr().unwrap())
    }
    fn connections(&self) -> usize {
        std::iter::from_fn(|| self.0.accept().ok()).count()
    }
}

#[rstest]
#[case::parse_error("[vpc\n", "spec.toml:1", "")]
#[case::unknown_key("[scenario]\nname = \"t\"\ntitle = \"t\"\ncolour = 1\n", "spec.toml:4", "colour")]
#[case::overlapping_cidrs(&format!("{BASE}[[zones]]\nname = \"b\"\ncidr = \"10.0.1.0/25\"\nsubnet_name = \"b\"\nnacl = \"a\"\n"), "spec.toml:15", "zones[b].cidr = \"10.0.1.0/25\": overlaps zone \"a\"")]
#[case::cidr_outside_vpc(&format!("{BASE}[[zones]]\nname = \"b\"\ncidr = \"10.1.0.0/24\"\nsubnet_name = \"b\"\nnacl = \"a\"\n"), "spec.toml:15", "outside the VPC's 10.0.0.0/16")]
#[case::rule_number_zero(&format!("{BASE}ingress = [{{ rule = 0, protocol = \"tcp\", ports = 80, cidr = \"0.0.0.0/0\", action = \"allow\" }}]\n"), "spec.toml:15", "nacls[a].ingress[0].rule = 0")]
#[case::rule_number_too_big(&format!("{BASE}ingress = [{{ rule = 32767, protocol = \"tcp\", ports = 80, cidr = \"0.0.0.0/0\", action = \"allow\" }}]\n"), "spec.toml:15", "nacls[a].ingress[0].rule = 32767")]
#[case::duplicate_rule(&format!("{BASE}ingress = [\n{{ rule = 100, protocol = \"tcp\", ports = 80, cidr = \"0.0.0.0/0\", action = \"allow\" }},\n{{ rule = 100, protocol = \"tcp\", ports = 81, cidr = \"0.0.0.0/0\", action = \"allow\" }}]\n"), "spec.toml:17", "nacls[a].ingress[1].rule = 100: duplicate")]
#[case::inverted_ports(&format!("{BASE}ingress = [{{ rule = 1, protocol = \"tcp\", ports = \"443-80\", cidr = \"0.0.0.0/0\", action = \"allow\" }}]\n"), "spec.toml:15", "nacls[a].ingress[0].ports = \"443-80\"")]
#[case::unknown_protocol(&format!("{BASE}ingress = [{{ rule = 1, protocol = \"smtp\", cidr = \"0.0.0.0/0\", action = \"allow\" }}]\n"), "spec.toml:15", "nacls[a].ingress[0].protocol = \"smtp\"")]
#[case::unknown_group(&format!("{BASE}[[security_groups]]\nname = \"g\"\ngroup_name = \"g\"\ndescription = \"d\"\nzone = \"a\"\ningress = [{{ protocol = \"tcp\", ports = 22, group = \"ghost\" }}]\n"), "spec.toml:20", "security_groups[g].ingress[0].group = \"ghost\"")]
#[case::missing_zone(&format!("{BASE}[[security_groups]]\nname = \"g\"\ngroup_name = \"g\"\ndescription = \"d\"\nzone = \"nowhere\"\n"), "spec.toml:15", "security_groups[g].zone = \"nowhere\"")]
#[case::nat_in_unknown_zone(&format!("{BASE}[internet_gateway]\nname = \"i\"\n[[nat_gateways]]\nname = \"n\"\nzone = \"ghost\"\ntag_name = \"n\"\n"), "spec.toml:17", "nat_gateways[n].zone = \"ghost\": no zone of that name")]
#[case::nat_without_internet_gateway(&format!("{BASE}[[nat_gateways]]\nname = \"n\"\nzone = \"a\"\ntag_name = \"n\"\n"), "spec.toml:15", "nat_gateways[n] = \"n\": a NAT gateway reaches the internet only through an internet gateway")]
#[case::route_to_unknown_nat(&format!("{BASE}[[route_tables]]\nname = \"r\"\ntag_name = \"r\"\nzones = [\"a\"]\nroutes = [{{ destination = \"0.0.0.0/0\", target = \"nat-gateway\", nat_gateway = \"ghost\" }}]\n"), "spec.toml:15", "route_tables[r].routes[0].nat_gateway = \"ghost\": no NAT gateway of that name")]
#[case::ephemeral_from_port_zero(&BASE.replace("name = \"v\"\n", "name = \"v\"\nephemeral_ports = \"0-65535\"\n"), "spec.toml:7", "vpc.ephemeral_ports = \"0-65535\": not an ascending port range within 1-65535")]
#[case::ephemeral_inverted(&format!("{BASE}[[zones]]\nname = \"b\"\ncidr = \"10.0.2.0/24\"\nsubnet_name = \"b\"\nnacl = \"a\"\nephemeral_ports = \"65535-32768\"\n"), "spec.toml:15", "zones[b].ephemeral_ports = \"65535-32768\"")]
#[case::ephemeral_one_port(&format!("{BASE}[[externals]]\nname = \"office\"\ncidr = \"203.0.113.0/24\"\nephemeral_ports = 443\n"), "spec.toml:15", "externals[office].ephemeral_ports = 443")]
#[case::external_inside_the_vpc(&format!("{BASE}[[externals]]\nname = \"office\"\ncidr = \"10.0.200.0/24\"\n"), "spec.toml:15", "externals[office].cidr = \"10.0.200.0/24\": overlaps the VPC's 10.0.0.0/16")]
#[case::workload_in_unknown_group(&format!("{BASE}[[workloads]]\nname = \"w\"\nzone = \"a\"\ngroups = [\"ghost\"]\n"), "spec.toml:15", "workloads[w].groups = \"ghost\": no security group of that name")]
fn bad_spec_is_refused_before_any_call(#[case] text: &str, #[case] location: &str, #[case] message: &str) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("spec.toml");
    std::fs::File::create(&path).unwrap().write_all(text.as_bytes()).unwrap();
    let counter = Counter::new();
    let out = Command::new(env!("CARGO_BIN_EXE_microseg"))
        .args(["run", "--spec"])
        .arg(&path)
        .args(["--target", &format!("endpoint={}", counter.url())])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(exit::USAGE), "{stderr}");
    assert!(stderr.contains(&format!("{}", path.display()).replace("spec.toml", "")), "names the file: {stderr}");
    assert!(stderr.contains(location), "names the line ({location}): {stderr}");
    assert!(stderr.contains(message), "names field and value ({message}): {stderr}");
    assert_eq!(counter.connections(), 0, "no API call for a bad spec");
}

#[test]
fn unknown_scenario_lists_the_known_ones() {
    let out = Command::new(env!("CARGO_BIN_EXE_microseg")).args(["plan", "--scenario", "nope"]).output().unwrap();
    assert_eq!(out.status.code(), Some(exit::USAGE));
    assert!(String::from_utf8_lossy(&out.stderr).contains("built-in scenarios are recipe"));
}

#[test]
fn aws_target_without_allowlist_is_refused_before_any_call() {
    let out = Command::new(env!("CARGO_BIN_EXE_microseg"))
        .args(["run", "--target", "aws"])
        .env_remove("AWS_ENDPOINT_URL")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(exit::TARGET_UNAVAILABLE));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no --allow-account given"));
}

/// The aws target with fake credentials and no network reachable: had a guard let a call
/// through, the error would be a failed connection, not the refusal.
fn microseg_on_aws(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_microseg"))
        .args(args)
        .args(["--target", "aws"])
        .env_remove("AWS_ENDPOINT_URL")
        .env_remove("AWS_PROFILE")
        .env_remove("AWS_REGION")
        .env_remove("AWS_DEFAULT_REGION")
        .env("AWS_ACCESS_KEY_ID", "AKIAFAKEFAKEFAKEFAKE")
        .env("AWS_SECRET_ACCESS_KEY", "fake")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("AWS_CONFIG_FILE", "/nonexistent")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")
        .output()
        .unwrap()
}

#[test]
fn aws_target_refuses_any_region_not_named_before_any_call() {
    for command in [&["run"][..], &["sweep", "--older-than", "6h"], &["doctor"], &["validate", "--vpc-id", "vpc-1"]] {
        let without = [command, &["--allow-account", "123456789012", "--region", "eu-west-1"]].concat();
        let out = microseg_on_aws(&without);
        assert_eq!(out.status.code(), Some(exit::TARGET_UNAVAILABLE), "{without:?}");
        let text = String::from_utf8_lossy(&out.stderr).to_string() + &String::from_utf8_lossy(&out.stdout);
        assert!(text.contains("without --allow-region"), "{without:?}: {text}");
        let other = [&without[..], &["--allow-region", "us-east-1"]].concat();
        let out = microseg_on_aws(&other);
        assert_eq!(out.status.code(), Some(exit::TARGET_UNAVAILABLE), "{other:?}");
        let text = String::from_utf8_lossy(&out.stderr).to_string() + &String::from_utf8_lossy(&out.stdout);
        assert!(
            text.contains("refusing AWS region eu-west-1: it is not in --allow-region (us-east-1)"),
            "{other:?}: {text}"
        );
    }
    // No --region and no region in the environment: refused as well, said so.
    let out = microseg_on_aws(&["run", "--allow-account", "123456789012", "--allow-region", "us-east-1"]);
    assert_eq!(out.status.code(), Some(exit::TARGET_UNAVAILABLE));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no --region, AWS_REGION or profile region"));
}

#[test]
fn sweep_all_on_a_real_account_needs_its_confirmation_flag() {
    let out = microseg_on_aws(&[
        "sweep",
        "--all",
        "--allow-account",
        "123456789012",
        "--allow-region",
        "eu-west-1",
        "--region",
        "eu-west-1",
    ]);
    assert_eq!(out.status.code(), Some(exit::USAGE));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--yes-delete-all-runs") && err.contains("every microseg run"), "{err}");
    // With it, the sweep goes on to the target, whose next guard (a region not allowed,
    // so no request leaves) is what stops it here.
    let out = microseg_on_aws(&[
        "sweep",
        "--all",
        "--yes-delete-all-runs",
        "--allow-account",
        "123456789012",
        "--allow-region",
        "us-east-1",
        "--region",
        "eu-west-1",
        "--quiet",
    ]);
    assert_eq!(out.status.code(), Some(exit::TARGET_UNAVAILABLE), "{}", String::from_utf8_lossy(&out.stderr));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("refusing AWS region eu-west-1") && !err.contains("--yes-delete-all-runs"), "{err}");
    // The flag confirms --all and nothing else, refused before any target starts (the
    // target here is a listener that counts connections).
    let counter = Counter::new();
    let out = Command::new(env!("CARGO_BIN_EXE_microseg"))
        .args([
            "sweep",
            "--yes-delete-all-runs",
            "--older-than",
            "1h",
            "--target",
            &format!("endpoint={}", counter.url()),
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(exit::USAGE), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stderr).contains("only --all"));
    assert_eq!(counter.connections(), 0);
}

#[test]
fn sweep_all_on_an_emulator_needs_no_confirmation() {
    // The emulator is a listener that counts connections and answers nothing: the sweep
    // gets as far as trying it, which is the point (no refusal before).
    let counter = Counter::new();
    let out = Command::new(env!("CARGO_BIN_EXE_microseg"))
        .args(["sweep", "--all", "--quiet", "--wait", "1s", "--target", &format!("endpoint={}", counter.url())])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(exit::TARGET_UNAVAILABLE), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(counter.connections() > 0, "the sweep never tried the emulator");
}

#[test]
fn dry_run_prints_the_plan_and_calls_nothing() {
    let counter = Counter::new();
    let out = Command::new(env!("CARGO_BIN_EXE_microseg"))
        .args(["run", "--dry-run", "--target", &format!("endpoint={}", counter.url())])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(exit::PASS));
    let plan: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(plan["zones"].as_array().map(Vec::len), Some(6));
    assert_eq!(counter.connections(), 0);
}

#[test]
fn doctor_lists_every_target_and_the_divergences() {
    let out = Command::new(env!("CARGO_BIN_EXE_microseg")).arg("doctor").output().unwrap();
    assert_eq!(out.status.code(), Some(exit::PASS));
    let text = String::from_utf8_lossy(&out.stdout);
    for line in ["localstack-host:", "localstack-container:", "auto:", "aws:", "nacl-without-default-deny"] {
        assert!(text.contains(line), "doctor names {line}: {text}");
    }
}

#[test]
fn bad_flags_are_usage_errors_before_any_call() {
    let counter = Counter::new();
    for args in [
        vec!["run", "--target", "lokalstack"],
        vec!["run", "--inject", "boom@rules"],
        vec!["sweep", "--run-id", "not-a-run"],
        vec!["sweep", "--older-than", "six hours"],
        vec!["validate", "--vpc-id", "vpc-1", "--tag", "novalue"],
        vec!["run", "--target", "aws", "--allow-account", "12345"],
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_microseg"))
            .args(&args)
            .env("MICROSEG_TARGET", format!("endpoint={}", counter.url()))
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(exit::USAGE), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
        assert!(String::from_utf8_lossy(&out.stderr).starts_with("error: "), "{args:?}");
    }
    assert_eq!(counter.connections(), 0);
}

/// `--traffic` runs only on localemu (docs/GUIDE.md, "Real traffic"): on any other target,
/// or with `--keep`, it is a usage error before any emulator starts or any call is made.
#[test]
fn traffic_on_another_target_or_with_keep_is_a_usage_error_before_any_call() {
    let counter = Counter::new();
    let endpoint = format!("endpoint={}", counter.url());
    for (args, says) in [
        (vec!["run", "--traffic", "--target", endpoint.as_str()], "--traffic needs --target localemu"),
        (vec!["run", "--traffic", "--target", "moto"], "--traffic needs --target localemu, not moto"),
        (vec!["run", "--traffic", "--target", "all-emulators"], "--traffic needs one target, localemu"),
        (vec!["run", "--traffic", "--target", "localemu", "--keep"], "takes no --keep"),
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_microseg")).args(&args).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(exit::USAGE), "{args:?}: {stderr}");
        assert!(stderr.contains(says), "{args:?}: {stderr}");
    }
    assert_eq!(counter.connections(), 0);
}
