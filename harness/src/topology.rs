//! A deployment as pictures: the topology (VPC, zones, NACLs, groups, group-reference
//! arrows, internet gateway) read from the observed model, drawn as Mermaid the way the
//! recipe's own diagram is, and as one self-contained HTML page with the zone matrix.
//!
//! Both pictures are drawn from [`Topology`], which is read from what was *observed*
//! (bound to the plan's logical names), never from the plan alone: a subnet left on the
//! default NACL shows the default NACL. Both go through one [`Diagram`] (nodes,
//! clusters, edges and their labels), so they show the same things; the HTML picture is
//! laid out by [`layout`] and written by [`svg`].

pub mod diagram;
pub mod layout;
pub mod svg;
pub mod synthetic;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write;

use serde::Serialize;

use crate::bindings::Bindings;
use crate::model::{Direction, Peer, PortRange, Protocol};
use crate::observe::Observed;
use crate::plan::Plan;
use crate::reach::Reachability;
use diagram::{Diagram, EdgeKind, NodeKind};
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
    /// Named address ranges outside the VPC: name and CIDR.
    pub externals: Vec<(String, String)>,
    /// The zone of each endpoint of the reachability matrix that stands for a workload
    /// (a zone without workloads is its own endpoint).
    pub endpoints: BTreeMap<String, String>,
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
        externals: plan.externals.iter().map(|e| (e.name.clone(), e.cidr.to_string())).collect(),
        endpoints: plan.workloads.iter().map(|w| (w.name.clone(), w.zone.clone())).collect(),
    }
}

/// Mermaid label text: quotes and angle brackets would end or break the label.
fn label(s: &str) -> String {
    s.replace('"', "'").replace('<', "‹").replace('>', "›")
}

/// The topology as a Mermaid `graph TB`, drawn from the same [`Diagram`] as the HTML
/// picture: a subgraph per zone with its NACL and groups, the internet gateway and the
/// named external ranges, dotted arrows for group references, and thick arrows for the
/// traffic the evaluator finds passing between zones (labelled, red where unintended).
pub fn mermaid(t: &Topology, reach: Option<&Reachability>) -> String {
    let d = Diagram::new(t, reach);
    let mut out = String::from("graph TB\n");
    let lines = |l: &[String]| l.iter().map(|s| label(s)).collect::<Vec<_>>().join("<br/>");
    let node = |out: &mut String, n: &diagram::Node, indent: usize| {
        let pad = " ".repeat(indent);
        let _ = match n.kind {
            NodeKind::Internet => writeln!(out, "{pad}{}(({}))", n.id, lines(&n.lines)),
            _ => writeln!(out, "{pad}{}[\"{}\"]", n.id, lines(&n.lines)),
        };
    };
    for n in d.nodes.iter().filter(|n| n.cluster.is_none()) {
        node(&mut out, n, 4);
    }
    fn cluster(
        out: &mut String,
        d: &Diagram,
        c: usize,
        indent: usize,
        node: &dyn Fn(&mut String, &diagram::Node, usize),
    ) {
        let pad = " ".repeat(indent);
        let title: Vec<String> = d.clusters[c].title.iter().map(|s| label(s)).collect();
        let _ = writeln!(out, "{pad}subgraph {}[\"{}\"]", d.clusters[c].id, title.join("<br/>"));
        for child in (0..d.clusters.len()).filter(|&k| d.clusters[k].parent == Some(c)) {
            cluster(out, d, child, indent + 4, node);
        }
        for n in d.nodes.iter().filter(|n| n.cluster == Some(c)) {
            node(out, n, indent + 4);
        }
        let _ = writeln!(out, "{pad}end");
    }
    for c in (0..d.clusters.len()).filter(|&c| d.clusters[c].parent.is_none()) {
        cluster(&mut out, &d, c, 4, &node);
    }
    for e in &d.edges {
        let (from, to) = (d.id_of(e.from), d.id_of(e.to));
        let text = e.label.as_deref().map(label).unwrap_or_default();
        let _ = match e.kind {
            EdgeKind::Link => writeln!(out, "    {from} --- {to}"),
            EdgeKind::Route => writeln!(out, "    {from} --> {to}"),
            EdgeKind::Reference => writeln!(out, "    {from} -. \"{text}\" .-> {to}"),
            EdgeKind::Traffic => writeln!(out, "    {from} ==>|\"{text}\"| {to}"),
        };
    }
    for n in &d.nodes {
        if let Some(fill) = n.fill {
            let _ = writeln!(out, "    style {} fill:{fill}", n.id);
        }
    }
    for (i, _) in d.edges.iter().enumerate().filter(|(_, e)| e.unintended) {
        let _ = writeln!(out, "    linkStyle {i} stroke:#d00,stroke-width:3px");
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

    // Topology: laid out to fit the page (or scaled to it), from the same model as
    // the Mermaid picture.
    let d = Diagram::new(t, reach);
    let l = layout::layout(&d);
    out.push_str("<h2>Topology</h2>\n");
    out.push_str(&svg::svg(&d, &l));
    out.push_str(
        "<p style=\"font-size:12px\">Zones with their NACL and security groups. Dashed arrows: a security \
group admits (or sends to) another group's members, labelled with protocol and ports. Thick arrows: traffic the \
evaluator finds passing from one zone to another, green as intended, red where not all of it is intended (traffic \
within a zone is in the matrix). Blue: the internet gateway and the zones whose route tables send 0.0.0.0/0 to it. \
Hover an arrow for the rules and endpoints behind it.</p>\n",
    );
    if !l.unplaced.is_empty() {
        // Never drawn over something else: said here instead.
        out.push_str("<p style=\"font-size:12px\">Not drawn for lack of room:</p><ul style=\"font-size:12px\">");
        for &i in &l.unplaced {
            let e = &d.edges[i];
            let _ = write!(
                out,
                "<li>{} → {}: {}</li>",
                esc(d.id_of(e.from)),
                esc(d.id_of(e.to)),
                esc(e.label.as_deref().unwrap_or(&e.detail))
            );
        }
        out.push_str("</ul>\n");
    }

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
        // A wide matrix scrolls inside its own box, not the page.
        out.push_str("</p>\n<div style=\"overflow-x:auto\"><table><tr><th>from \\ to</th>");
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
        out.push_str("</table></div>\n<p style=\"font-size:12px\">Hover a cell for the rules that decide it.</p>\n");
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
