//! A spec of any number of zones, for the pictures' tests: built-in scenarios have at
//! most six zones, and a picture has to read at twenty too.
//!
//! Zones form a chain of tiers (each admits its service port from the one before it,
//! by NACL and by group reference), every fifth zone is an operations zone that opens
//! SSH to the four before it, every fourth routes to the internet gateway, the first takes
//! HTTPS from the internet and an external partner range, and some groups span two
//! zones. Names vary in length, as real ones do.

use std::fmt::Write;

const TIERS: [&str; 5] = ["edge", "web", "app", "data", "ops"];
const PORTS: [u16; 5] = [443, 8080, 8443, 5432, 22];
const LONG: [&str; 4] = ["analytics-warehouse", "payments", "search-indexer", "customer-identity"];

fn zone(i: usize) -> String {
    if i % 7 == 3 { format!("{}-{i:02}", LONG[(i / 7) % LONG.len()]) } else { format!("{}-{i:02}", TIERS[i % 5]) }
}

/// The operations zone that opens SSH to zone `i`, if there is one.
fn ops(i: usize, n: usize) -> Option<usize> {
    let o = i - i % 5 + 4;
    (i % 5 != 4 && o < n).then_some(o)
}

fn cidr(i: usize) -> String {
    format!("10.0.{}.0/24", i + 1)
}

/// The spec, as TOML. It passes validation for any `zones` from 1 to 250.
pub fn spec(zones: usize) -> String {
    let n = zones.clamp(1, 250);
    let mut s = String::new();
    let _ = writeln!(
        s,
        "[scenario]\nname = \"synthetic-{n}\"\ntitle = \"{n} zones in tiers (synthetic)\"\n\n\
[vpc]\ncidr = \"10.0.0.0/16\"\nname = \"synthetic-vpc\"\n\n[internet_gateway]\nname = \"synthetic-igw\"\n\n\
[[externals]]\nname = \"partner\"\ncidr = \"198.51.100.0/24\"\n\n[[externals]]\nname = \"office\"\ncidr = \"203.0.113.0/24\"\n"
    );
    for i in 0..n {
        let _ = writeln!(
            s,
            "[[zones]]\nname = \"{}\"\ncidr = \"{}\"\nsubnet_name = \"{}-subnet\"\nnacl = \"{}\"\n",
            zone(i),
            cidr(i),
            zone(i),
            zone(i)
        );
    }
    for i in 0..n {
        let port = PORTS[i % 5];
        let mut ingress = Vec::new();
        if i == 0 {
            ingress.push(format!(
                "{{ rule = 100, protocol = \"tcp\", ports = {port}, cidr = \"0.0.0.0/0\", action = \"allow\" }}"
            ));
            ingress.push(format!(
                "{{ rule = 105, protocol = \"tcp\", ports = {port}, cidr = \"198.51.100.0/24\", action = \"allow\" }}"
            ));
        } else {
            ingress.push(format!(
                "{{ rule = 100, protocol = \"tcp\", ports = {port}, cidr = \"{}\", action = \"allow\" }}",
                cidr(i - 1)
            ));
        }
        if let Some(ops) = ops(i, n) {
            ingress.push(format!(
                "{{ rule = 110, protocol = \"tcp\", ports = 22, cidr = \"{}\", action = \"allow\" }}",
                cidr(ops)
            ));
        }
        if i % 5 == 4 {
            ingress.push(
                "{ rule = 115, protocol = \"tcp\", ports = 22, cidr = \"203.0.113.0/24\", action = \"allow\" }".into(),
            );
        }
        ingress.push(
            "{ rule = 120, protocol = \"tcp\", ports = \"1024-65535\", cidr = \"0.0.0.0/0\", action = \"allow\" }"
                .into(),
        );
        let egress = [
            "{ rule = 100, protocol = \"tcp\", ports = \"1-65535\", cidr = \"10.0.0.0/16\", action = \"allow\" }",
            "{ rule = 110, protocol = \"tcp\", ports = \"1024-65535\", cidr = \"0.0.0.0/0\", action = \"allow\" }",
        ];
        let _ = writeln!(
            s,
            "[[nacls]]\nname = \"{z}\"\ntag_name = \"{z}-nacl\"\ningress = [\n  {}\n]\negress = [\n  {}\n]\n",
            ingress.join(",\n  "),
            egress.join(",\n  "),
            z = zone(i)
        );
    }
    let public: Vec<String> = (0..n).filter(|i| i % 4 == 0).map(|i| format!("\"{}\"", zone(i))).collect();
    let _ = writeln!(
        s,
        "[[route_tables]]\nname = \"public\"\ntag_name = \"synthetic-public-rt\"\nzones = [{}]\n\
routes = [{{ destination = \"0.0.0.0/0\", target = \"internet-gateway\" }}]\n",
        public.join(", ")
    );
    // Group i sits in zone i; every sixth group also in the zone after it.
    for i in 0..n {
        let port = PORTS[i % 5];
        let mut zones = vec![format!("\"{}\"", zone(i))];
        if i % 6 == 5 && i + 1 < n {
            zones.push(format!("\"{}\"", zone(i + 1)));
        }
        let mut ingress = Vec::new();
        if i == 0 {
            ingress.push(format!("{{ protocol = \"tcp\", ports = {port}, cidr = \"0.0.0.0/0\" }}"));
        } else {
            ingress.push(format!("{{ protocol = \"tcp\", ports = {port}, group = \"{}\" }}", zone(i - 1)));
        }
        if let Some(o) = ops(i, n) {
            ingress.push(format!("{{ protocol = \"tcp\", ports = 22, group = \"{}\" }}", zone(o)));
        } else if i % 5 == 4 {
            ingress.push("{ protocol = \"tcp\", ports = 22, cidr = \"203.0.113.0/24\" }".into());
        }
        let _ = writeln!(
            s,
            "[[security_groups]]\nname = \"{z}\"\ngroup_name = \"{z}-workload-sg\"\ndescription = \"workloads of {z}\"\n\
zones = [{}]\ningress = [\n  {}\n]\n",
            zones.join(", "),
            ingress.join(",\n  "),
            z = zone(i)
        );
    }
    let mut intent = |from: &str, to: &str, port: u16| {
        let _ = writeln!(s, "[[intent]]\nfrom = \"{from}\"\nto = \"{to}\"\nprotocol = \"tcp\"\nports = {port}\n");
    };
    intent("internet", &zone(0), PORTS[0]);
    for i in 1..n {
        intent(&zone(i - 1), &zone(i), PORTS[i % 5]);
    }
    for i in 0..n {
        if let Some(o) = ops(i, n) {
            intent(&zone(o), &zone(i), 22);
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use crate::plan::Plan;
    use crate::spec::{SpecSource, parse};

    #[test]
    fn every_size_passes_validation() {
        for n in [1, 2, 6, 20, 40] {
            let (s, src) =
                parse(SpecSource { path: format!("synthetic-{n}.toml").into(), text: super::spec(n) }).unwrap();
            let plan = Plan::from_spec(&s, &src).unwrap_or_else(|e| panic!("{n} zones: {e}"));
            assert_eq!(plan.zones.len(), n);
        }
    }
}
