//! A deployment as pictures: the topology (VPC, zones, NACLs, groups, group-reference
//! arrows, internet gateway) read from the observed model, drawn as Mermaid the way the
//! recipe's own diagram is, and as one self-contained HTML page with the zone matrix.
//!
//! Both pictures are drawn from [`Topology`], which is read from what was *observed*
//! (bound to the plan's logical names), never from the plan alone: a subnet left on the
//! default NACL shows the default NACL.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write;

use serde::Serialize;

use crate::bindings::Bindings;
use crate::model::{Direction, Peer, PortRange, Protocol};
use crate::observe::Observed;
use crate::plan::Plan;
use crate::reach::Reachability;
use microseg_reach::matrix::CellVerdict;

/// One zone as deployed.
#[derive(Debug, Clone, Serialize)]
pub struct ZoneView {
    /// Logical name.
    pub name: String,
    /// Subnet id and CIDR, if found.
    pub subnet: Option<(String, String)>,
    /// The NACL the subnet is on: its name (logical, or `default`) and id.
    pub nacl: Option<(String, String)>,
    /// Entries of that NACL, ingress and egress, AWS's `*` entries left out.
    pub nacl_entries: (usize, usize),
    /// Security groups of the zone's workloads: logical name, group name, id.
    pub groups: Vec<(String, String, String)>,
    /// Whether its route table sends the internet to an attached gateway.
    pub internet_route: bool,
}

/// A group rule that names another group.
#[derive(Debug, Clone, Serialize)]
pub struct Reference {
    /// The group traffic comes from (for ingress rules, the peer).
    pub from: String,
    /// The group traffic goes to.
    pub to: String,
    /// Protocol and ports.
    pub service: String,
}

/// What the pictures show.
#[derive(Debug, Clone, Serialize)]
pub struct Topology {
    /// VPC id and CIDR.
    pub vpc: Option<(String, String)>,
    /// The attached internet gateway's id.
    pub internet_gateway: Option<String>,
    /// Zones in spec order.
    pub zones: Vec<ZoneView>,
    /// Group references, merged per pair of groups.
    pub references: Vec<Reference>,
}

/// A protocol and its ports, ordered by protocol then port.
type Service = (Protocol, Option<PortRange>);

/// Reads the topology of a deployment.
pub fn topology(plan: &Plan, observed: &Observed, b: &Bindings) -> Topology {
    let vpc_id = observed.vpc.as_ref().map(|v| v.id.clone());
    let internet_gateway = observed
        .internet_gateways
        .iter()
        .find(|g| vpc_id.as_ref().is_some_and(|v| g.attached_vpc_ids.contains(v)))
        .map(|g| g.id.clone());
    let zones = plan
        .zones
        .iter()
        .map(|z| {
            let subnet = b.zones.get(&z.name).and_then(|id| observed.subnet(id));
            let nacl = subnet.and_then(|s| observed.nacl_of_subnet(&s.id));
            let count = |d: Direction| {
                nacl.map_or(0, |n| n.entries.iter().filter(|e| e.direction == d && !e.is_default_deny()).count())
            };
            ZoneView {
                name: z.name.clone(),
                subnet: subnet.map(|s| (s.id.clone(), s.cidr.to_string())),
                nacl: nacl.map(|n| {
                    let name = b.nacls.iter().find(|(_, id)| **id == n.id).map(|(k, _)| k.clone());
                    (
                        name.unwrap_or_else(|| if n.is_default { "default".into() } else { "unbound".into() }),
                        n.id.clone(),
                    )
                }),
                nacl_entries: (count(Direction::Ingress), count(Direction::Egress)),
                groups: plan
                    .security_groups
                    .iter()
                    .filter(|g| plan.zones_of_group(&g.name).contains(&z.name.as_str()))
                    .filter_map(|g| {
                        let id = b.security_groups.get(&g.name)?;
                        let observed = observed.security_group(id)?;
                        Some((g.name.clone(), observed.name.clone(), id.clone()))
                    })
                    .collect(),
                internet_route: subnet.and_then(|s| observed.route_table_of_subnet(&s.id)).is_some_and(|t| {
                    t.routes
                        .iter()
                        .any(|r| r.destination == "0.0.0.0/0" && internet_gateway.as_deref() == Some(&r.target))
                }),
            }
        })
        .collect();
    // Merged per pair of groups, services in protocol and port order whatever order
    // EC2 lists the rules in.
    let mut merged: BTreeMap<(String, String), BTreeSet<Service>> = BTreeMap::new();
    for g in &observed.security_groups {
        let Some(me) = b.group_name_of(&g.id) else { continue };
        for r in &g.rules {
            let Peer::Group(other) = b.resolve_peer(&r.peer) else { continue };
            let key = match r.direction {
                Direction::Ingress => (other, me.to_string()),
                Direction::Egress => (me.to_string(), other),
            };
            merged.entry(key).or_default().insert((r.protocol, r.ports));
        }
    }
    let references = merged
        .into_iter()
        .map(|((from, to), services)| {
            let s: Vec<String> = services
                .into_iter()
                .map(|(p, ports)| format!("{p}{}", ports.map(|r| format!("/{r}")).unwrap_or_default()))
                .collect();
            Reference { from, to, service: s.join(", ") }
        })
        .collect();
    Topology {
        vpc: observed.vpc.as_ref().map(|v| (v.id.clone(), v.cidr.to_string())),
        internet_gateway,
        zones,
        references,
    }
}

/// A Mermaid node id: letters, digits and underscores only.
fn node(prefix: &str, name: &str) -> String {
    let clean: String = name.chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '_' }).collect();
    format!("{prefix}_{clean}")
}

/// Mermaid label text: quotes and angle brackets would end or break the label.
fn label(s: &str) -> String {
    s.replace('"', "'").replace('<', "‹").replace('>', "›")
}

/// Colours of the recipe's own diagram, zone by zone, then round again.
const PALETTE: [&str; 6] = ["#FF6B6B", "#4ECDC4", "#45B7D1", "#96CEB4", "#FFEAA7", "#DDA0DD"];

/// The topology as a Mermaid `graph TB`: a subgraph per zone with its NACL and groups,
/// the internet gateway, dotted arrows for group references, and thick arrows for the
/// traffic the evaluator finds passing between zones (labelled, red where unintended).
pub fn mermaid(t: &Topology, reach: Option<&Reachability>) -> String {
    let mut out = String::from("graph TB\n");
    let vpc = t.vpc.as_ref().map_or("VPC (not found)".to_string(), |(id, cidr)| format!("VPC {id} ({cidr})"));
    let _ = writeln!(out, "    INTERNET((Internet))");
    if let Some(igw) = &t.internet_gateway {
        let _ = writeln!(out, "    IGW[\"Internet Gateway<br/>{}\"]", label(igw));
        let _ = writeln!(out, "    INTERNET --- IGW");
    }
    let _ = writeln!(out, "    subgraph VPC[\"{}\"]", label(&vpc));
    for z in &t.zones {
        let title = match &z.subnet {
            Some((id, cidr)) => format!("{} zone · {id} ({cidr})", z.name),
            None => format!("{} zone · subnet not found", z.name),
        };
        let _ = writeln!(out, "        subgraph {}[\"{}\"]", node("Z", &z.name), label(&title));
        // Each part escaped on its own: the `<br/>` between them must stay markup.
        let nacl = match &z.nacl {
            Some((name, id)) => {
                format!("NACL {}<br/>{}<br/>{} in · {} out", label(name), label(id), z.nacl_entries.0, z.nacl_entries.1)
            }
            None => "no NACL association".into(),
        };
        let _ = writeln!(out, "            {}[\"{nacl}\"]", node("NACL", &z.name));
        for (logical, name, id) in &z.groups {
            let _ = writeln!(out, "            {}[\"SG {}<br/>{}\"]", node("SG", logical), label(name), label(id));
        }
        let _ = writeln!(out, "        end");
    }
    let _ = writeln!(out, "    end");
    if t.internet_gateway.is_some() {
        for z in t.zones.iter().filter(|z| z.internet_route) {
            let _ = writeln!(out, "    IGW --> {}", node("NACL", &z.name));
        }
    }
    for r in &t.references {
        let _ = writeln!(out, "    {} -. \"{}\" .-> {}", node("SG", &r.from), label(&r.service), node("SG", &r.to));
    }
    let mut link =
        t.references.len() + t.zones.iter().filter(|z| z.internet_route && t.internet_gateway.is_some()).count();
    if t.internet_gateway.is_some() {
        link += 1;
    }
    let mut unintended_links = Vec::new();
    if let Some(r) = reach {
        for c in r.matrix.cells.iter().filter(|c| !c.allowed.is_empty()) {
            let end = |n: &str| if n == "internet" { "INTERNET".to_string() } else { node("Z", n) };
            let services: Vec<String> = c.allowed.iter().map(|s| s.to_string()).collect();
            let _ = writeln!(out, "    {} ==>|\"{}\"| {}", end(&c.from), label(&services.join(" ")), end(&c.to));
            if matches!(c.verdict, CellVerdict::Open | CellVerdict::BlockedAndOpen) {
                unintended_links.push(link);
            }
            link += 1;
        }
    }
    for (i, z) in t.zones.iter().enumerate() {
        let _ = writeln!(out, "    style {} fill:{}", node("NACL", &z.name), PALETTE[i % PALETTE.len()]);
    }
    for l in unintended_links {
        let _ = writeln!(out, "    linkStyle {l} stroke:#d00,stroke-width:3px");
    }
    out
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// Fill colour and word for a matrix cell's verdict.
fn verdict_style(v: CellVerdict) -> (&'static str, &'static str) {
    match v {
        CellVerdict::Closed => ("#eceff1", "closed, as intended"),
        CellVerdict::AsIntended => ("#a5d6a7", "as intended"),
        CellVerdict::Blocked => ("#ffcc80", "intended but blocked"),
        CellVerdict::Open => ("#ef9a9a", "open though not intended"),
        CellVerdict::BlockedAndOpen => ("#e57373", "blocked and open"),
    }
}

const ZONE_W: usize = 340;
const ZONE_H: usize = 150;
const COLS: usize = 3;
const GAP_X: usize = 80;
const GAP_Y: usize = 70;
const TOP: usize = 190;

/// One self-contained HTML page (no script, no network): the checks, the topology as
/// inline SVG, and the zone matrix coloured by verdict, each cell's tooltip naming what
/// passes and the rules that decide it.
pub fn html(title: &str, t: &Topology, reach: Option<&Reachability>, checks: &[crate::checks::CheckResult]) -> String {
    let mut out = String::new();
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{}</title>\n<style>\
body{{font-family:system-ui,sans-serif;margin:24px;color:#222}}h1{{font-size:20px}}h2{{font-size:16px;margin-top:28px}}\
table{{border-collapse:collapse}}td,th{{border:1px solid #bbb;padding:4px 8px;font-size:13px}}\
th{{background:#f5f5f5}}.pass{{color:#2e7d32}}.fail{{color:#c62828;font-weight:bold}}\
.legend span{{display:inline-block;padding:2px 8px;margin-right:8px;border:1px solid #bbb;font-size:12px}}\
.divergence{{color:#b26a00}}.skipped{{color:#777}}\
</style></head><body>\n<h1>{}</h1>\n",
        esc(title),
        esc(title)
    );

    out.push_str("<h2>Checks</h2>\n<table><tr><th>check</th><th>status</th><th>findings</th></tr>\n");
    for c in checks {
        let class = match c.status {
            crate::checks::Status::Pass => "pass",
            crate::checks::Status::Fail => "fail",
            crate::checks::Status::Divergence => "divergence",
            crate::checks::Status::Skipped => "skipped",
        };
        let findings: Vec<String> =
            c.findings.iter().map(|f| format!("[{}] {}: found {}", f.id, f.resource, f.found)).collect();
        let _ = writeln!(
            out,
            "<tr><td>{}</td><td class=\"{class}\">{class}</td><td>{}</td></tr>",
            esc(&c.id),
            esc(&findings.join("\n")).replace('\n', "<br>")
        );
    }
    out.push_str("</table>\n");

    // Topology: the internet and its gateway on top, zones in a grid inside the VPC.
    let rows = t.zones.len().div_ceil(COLS).max(1);
    let (width, height) = (COLS * (ZONE_W + GAP_X) + 40, TOP + rows * (ZONE_H + GAP_Y) + 40);
    let centre = |i: usize| {
        (40 + (i % COLS) * (ZONE_W + GAP_X) + ZONE_W / 2, TOP + 20 + (i / COLS) * (ZONE_H + GAP_Y) + ZONE_H / 2)
    };
    let _ = write!(
        out,
        "<h2>Topology</h2>\n<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"{height}\" \
font-family=\"sans-serif\" font-size=\"12\">\n<defs><marker id=\"arrow\" viewBox=\"0 0 10 10\" refX=\"10\" \
refY=\"5\" markerWidth=\"8\" markerHeight=\"8\" orient=\"auto-start-reverse\"><path d=\"M0,0 L10,5 L0,10 z\" \
fill=\"#555\"/></marker></defs>\n<rect width=\"100%\" height=\"100%\" fill=\"#ffffff\"/>\n"
    );
    let mid = width / 2;
    let _ = writeln!(
        out,
        "<circle cx=\"{mid}\" cy=\"40\" r=\"28\" fill=\"#bbdefb\" stroke=\"#1565c0\"/><text x=\"{mid}\" y=\"44\" \
text-anchor=\"middle\">Internet</text>"
    );
    if let Some(igw) = &t.internet_gateway {
        let _ = writeln!(
            out,
            "<line x1=\"{mid}\" y1=\"68\" x2=\"{mid}\" y2=\"100\" stroke=\"#1565c0\" stroke-width=\"2\"/>\
<rect x=\"{}\" y=\"100\" width=\"200\" height=\"36\" rx=\"6\" fill=\"#e3f2fd\" stroke=\"#1565c0\"/>\
<text x=\"{mid}\" y=\"122\" text-anchor=\"middle\">Internet gateway {}</text>",
            mid - 100,
            esc(igw)
        );
    }
    let vpc = t.vpc.as_ref().map_or("VPC (not found)".to_string(), |(id, cidr)| format!("VPC {id} ({cidr})"));
    let _ = writeln!(
        out,
        "<rect x=\"20\" y=\"{}\" width=\"{}\" height=\"{}\" rx=\"10\" fill=\"#fafafa\" stroke=\"#888\" \
stroke-dasharray=\"6 3\"/><text x=\"32\" y=\"{}\" font-weight=\"bold\">{}</text>",
        TOP - 20,
        width - 40,
        rows * (ZONE_H + GAP_Y) + 30,
        TOP - 4,
        esc(&vpc)
    );
    for (i, z) in t.zones.iter().enumerate() {
        let (cx, cy) = centre(i);
        let (x, y) = (cx - ZONE_W / 2, cy - ZONE_H / 2);
        let colour = PALETTE[i % PALETTE.len()];
        let _ = writeln!(
            out,
            "<rect x=\"{x}\" y=\"{y}\" width=\"{ZONE_W}\" height=\"{ZONE_H}\" rx=\"8\" fill=\"{colour}\" \
fill-opacity=\"0.35\" stroke=\"{colour}\" stroke-width=\"2\"/>"
        );
        let mut lines = vec![(format!("{} zone", z.name), true)];
        lines.push((z.subnet.as_ref().map_or("subnet not found".into(), |(id, cidr)| format!("{id} ({cidr})")), false));
        lines.push((
            match &z.nacl {
                Some((name, id)) => format!("NACL {name} {id}: {} in, {} out", z.nacl_entries.0, z.nacl_entries.1),
                None => "no NACL association".into(),
            },
            false,
        ));
        for (_, name, id) in &z.groups {
            lines.push((format!("SG {name} ({id})"), false));
        }
        if z.groups.is_empty() {
            lines.push(("no security group".into(), false));
        }
        if z.internet_route {
            lines.push(("route 0.0.0.0/0 → internet gateway".into(), false));
        }
        for (k, (text, bold)) in lines.iter().enumerate() {
            let weight = if *bold { " font-weight=\"bold\"" } else { "" };
            let _ = writeln!(out, "<text x=\"{}\" y=\"{}\"{weight}>{}</text>", x + 10, y + 20 + k * 17, esc(text));
        }
        if z.internet_route && t.internet_gateway.is_some() {
            let _ = writeln!(
                out,
                "<line x1=\"{mid}\" y1=\"136\" x2=\"{cx}\" y2=\"{y}\" stroke=\"#1565c0\" stroke-width=\"1.5\" \
marker-end=\"url(#arrow)\"/>"
            );
        }
    }
    let zone_of = |group: &str| t.zones.iter().position(|z| z.groups.iter().any(|(g, _, _)| g == group));
    for r in &t.references {
        let (Some(a), Some(b)) = (zone_of(&r.from), zone_of(&r.to)) else { continue };
        if a == b {
            continue;
        }
        let ((x1, y1), (x2, y2)) = (centre(a), centre(b));
        // From edge to edge of the two boxes, not centre to centre, so the zones'
        // text stays readable.
        let (dx, dy) = (x2 as f64 - x1 as f64, y2 as f64 - y1 as f64);
        let scale = ((ZONE_W as f64 / 2.0) / dx.abs().max(1.0)).min((ZONE_H as f64 / 2.0) / dy.abs().max(1.0));
        let (sx, sy) = (x1 as f64 + dx * scale, y1 as f64 + dy * scale);
        let (ex, ey) = (x2 as f64 - dx * scale, y2 as f64 - dy * scale);
        let _ = writeln!(
            out,
            "<line x1=\"{sx:.0}\" y1=\"{sy:.0}\" x2=\"{ex:.0}\" y2=\"{ey:.0}\" stroke=\"#555\" stroke-width=\"1.5\" \
stroke-dasharray=\"5 4\" marker-end=\"url(#arrow)\"><title>group {} → group {}: {}</title></line>\
<text x=\"{:.0}\" y=\"{:.0}\" fill=\"#333\" font-size=\"11\">{}</text>",
            esc(&r.from),
            esc(&r.to),
            esc(&r.service),
            (sx + ex) / 2.0 + 4.0,
            (sy + ey) / 2.0 - 4.0,
            esc(&r.service)
        );
    }
    out.push_str(
        "</svg>\n<p style=\"font-size:12px\">Dashed arrows: a security group admits (or sends to) another \
group's members, labelled with protocol and ports.</p>\n",
    );

    if let Some(r) = reach {
        out.push_str("<h2>Reachability (rows open connections to columns)</h2>\n<p class=\"legend\">");
        for v in [
            CellVerdict::AsIntended,
            CellVerdict::Closed,
            CellVerdict::Blocked,
            CellVerdict::Open,
            CellVerdict::BlockedAndOpen,
        ] {
            let (fill, word) = verdict_style(v);
            let _ = write!(out, "<span style=\"background:{fill}\">{word}</span>");
        }
        out.push_str("</p>\n<table><tr><th>from \\ to</th>");
        for e in &r.matrix.endpoints {
            let _ = write!(out, "<th>{}</th>", esc(e));
        }
        out.push_str("</tr>\n");
        for from in &r.matrix.endpoints {
            let _ = write!(out, "<tr><th>{}</th>", esc(from));
            for to in &r.matrix.endpoints {
                let Some(c) = r.matrix.cell(from, to) else {
                    out.push_str("<td>—</td>");
                    continue;
                };
                let (fill, word) = verdict_style(c.verdict);
                let services: Vec<String> = c.allowed.iter().map(|s| s.to_string()).collect();
                let intended: Vec<String> = c.intended.iter().map(|s| s.to_string()).collect();
                let mut tip = format!(
                    "{from} → {to}: {word}\npasses: {}\nintended: {}",
                    if services.is_empty() { "nothing".into() } else { services.join(" ") },
                    if intended.is_empty() { "nothing".into() } else { intended.join(" ") }
                );
                for u in r.unintended.iter().filter(|u| u.from == *from && u.to == *to) {
                    let _ = write!(tip, "\n{} allowed by: {}", u.service, u.allowed_by.join("; "));
                }
                for v in r
                    .intents
                    .iter()
                    .filter(|v| !v.allowed && v.flow.from.to_string() == *from && v.flow.to.to_string() == *to)
                {
                    let ports = v.flow.ports.map(|p| format!("/{p}")).unwrap_or_default();
                    let _ = write!(tip, "\n{}{ports} blocked by: {}", v.flow.protocol, v.blocked_by.join("; "));
                }
                let text = if services.is_empty() { "·".to_string() } else { services.join(" ") };
                let _ = write!(out, "<td style=\"background:{fill}\" title=\"{}\">{}</td>", esc(&tip), esc(&text));
            }
            out.push_str("</tr>\n");
        }
        out.push_str("</table>\n<p style=\"font-size:12px\">Hover a cell for the rules that decide it.</p>\n");
    }
    out.push_str("</body></html>\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec;

    fn recipe_drawn() -> (Topology, Reachability) {
        let (s, src) = spec::load("recipe").unwrap();
        let plan = Plan::from_spec(&s, &src).unwrap();
        let (o, b) = crate::reach::designed(&plan);
        let r = crate::reach::analyse(&plan, &o, &b);
        (topology(&plan, &o, &b), r)
    }

    /// From the recipe's groups by hand: web admits 80 and 443 from dmz and 22 from
    /// management; app admits 8080 from web and 22 from management; the database admits
    /// 3306 from app and 22 from management. The public route table serves dmz and web.
    #[test]
    fn mermaid_draws_zones_references_gateway_routes_and_the_unintended_opening() {
        let (t, r) = recipe_drawn();
        let m = mermaid(&t, Some(&r));
        assert!(m.starts_with("graph TB\n"));
        for z in ["dmz", "web", "app", "database", "management", "monitoring"] {
            assert!(m.contains(&format!("subgraph Z_{z}[")), "{z}: {m}");
        }
        for edge in [
            r#"SG_dmz -. "tcp/80, tcp/443" .-> SG_web"#,
            r#"SG_management -. "tcp/22" .-> SG_web"#,
            r#"SG_web -. "tcp/8080" .-> SG_app"#,
            r#"SG_app -. "tcp/3306" .-> SG_database"#,
            "IGW --> NACL_dmz",
            "IGW --> NACL_web",
        ] {
            assert!(m.contains(edge), "{edge}: {m}");
        }
        assert!(!m.contains("IGW --> NACL_app"), "{m}");
        assert!(m.contains(r#"NACL_web["NACL web<br/>acl-web<br/>4 in · 3 out"]"#), "{m}");
        assert_eq!(t.references.len(), 6);
        // Traffic that passes: internet → dmz and dmz → web as intended, dmz → internet's
        // high ports unintended, drawn red.
        assert!(m.contains(r#"INTERNET ==>|"tcp/80,443"| Z_dmz"#), "{m}");
        assert!(m.contains(r#"Z_dmz ==>|"tcp/1024-65535"| INTERNET"#), "{m}");
        assert_eq!(m.matches("linkStyle").count(), 1, "{m}");
    }

    #[test]
    fn html_is_self_contained_and_colours_each_cell_by_verdict() {
        let (t, r) = recipe_drawn();
        let h = html("t", &t, Some(&r), &[]);
        assert!(
            !h.contains("http://") || h.matches("http://").count() == h.matches("http://www.w3.org/2000/svg").count()
        );
        assert!(!h.contains("<script") && !h.contains("https://"));
        // By hand: 2 cells as intended, 1 open, 11 blocked (one per blocked intended pair).
        assert_eq!(h.matches("background:#a5d6a7\" title").count(), 2, "as intended: internet→dmz, dmz→web");
        assert_eq!(h.matches("background:#ef9a9a\" title").count(), 1, "open: dmz→internet");
        assert_eq!(h.matches("background:#ffcc80\" title").count(), 11);
        assert!(
            h.contains("tcp/8080 blocked by: web NACL ingress: no entry matches tcp/1024 from 10.0.3.10, default deny")
        );
    }
}
