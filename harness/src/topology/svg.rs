//! The laid-out diagram as inline SVG. Every drawn thing says what it is, so a browser
//! test can find it: boxes are `rect.box` inside `g.node` / `g.cluster` (with
//! `data-id`, and `data-cluster` / `data-parent` for what holds them), arrows are
//! `g.edge` with `data-from`, `data-to`, `data-kind` and `data-label`, their line a
//! `path.arrow` and their head a `path.arrowhead`; all text is `text` inside them.

use std::fmt::Write;

use super::diagram::{Diagram, EdgeKind, NodeKind};
use super::layout::{Layout, Text};

/// The font the layout's widths are measured in, then what stands in for it.
pub const FONT_FAMILY: &str = "DejaVu Sans, Verdana, sans-serif";

fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

fn text(out: &mut String, t: &Text, fill: &str) {
    let weight = if t.bold { " font-weight=\"bold\"" } else { "" };
    let _ = writeln!(
        out,
        "<text x=\"{:.2}\" y=\"{:.2}\" font-size=\"{}\"{weight} fill=\"{fill}\" textLength=\"{:.2}\" \
lengthAdjust=\"spacing\">{}</text>",
        t.x,
        t.baseline,
        t.size,
        t.width,
        esc(&t.text)
    );
}

/// Stroke colour, width and dashes of an edge.
fn stroke(kind: EdgeKind, unintended: bool) -> (&'static str, f64, &'static str) {
    match kind {
        EdgeKind::Link => ("#1565c0", 2.0, ""),
        EdgeKind::Route => ("#1565c0", 1.5, ""),
        EdgeKind::Reference => ("#555555", 1.5, " stroke-dasharray=\"5 4\""),
        EdgeKind::Traffic if unintended => ("#d00000", 3.0, ""),
        EdgeKind::Traffic => ("#2e7d32", 3.0, ""),
    }
}

/// The word `data-kind` carries for an edge.
pub fn kind_word(kind: EdgeKind) -> &'static str {
    match kind {
        EdgeKind::Link => "link",
        EdgeKind::Route => "route",
        EdgeKind::Reference => "reference",
        EdgeKind::Traffic => "traffic",
    }
}

/// The SVG element: it scales down to the width of its container and never past its
/// own size.
pub fn svg(d: &Diagram, l: &Layout) -> String {
    let mut out = String::new();
    let (w, h) = (l.width.ceil(), l.height.ceil());
    let _ = writeln!(
        out,
        "<svg class=\"topology\" xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 {w} {h}\" width=\"{w}\" \
height=\"{h}\" style=\"display:block;max-width:100%;height:auto\" font-family=\"{FONT_FAMILY}\" role=\"img\" \
aria-label=\"Topology\">"
    );
    let _ = writeln!(out, "<rect width=\"100%\" height=\"100%\" fill=\"#ffffff\"/>");
    // Clusters, outermost first, so inner ones paint over outer ones.
    let mut order: Vec<usize> = (0..d.clusters.len()).collect();
    let depth = |mut c: usize| {
        let mut n = 0;
        while let Some(p) = d.clusters[c].parent {
            c = p;
            n += 1;
        }
        n
    };
    order.sort_by_key(|&c| depth(c));
    for c in order {
        let cluster = &d.clusters[c];
        let r = l.clusters[c];
        if r.w <= 0.0 {
            continue;
        }
        let parent = cluster.parent.map(|p| format!(" data-parent=\"{}\"", esc(&d.clusters[p].id))).unwrap_or_default();
        let _ = writeln!(out, "<g class=\"cluster\" data-id=\"{}\"{parent}>", esc(&cluster.id));
        let style = match cluster.colour {
            Some(colour) => format!("fill=\"{colour}\" fill-opacity=\"0.18\" stroke=\"{colour}\" stroke-width=\"2\""),
            None => "fill=\"#fafafa\" stroke=\"#888888\" stroke-dasharray=\"6 3\"".to_string(),
        };
        let _ = writeln!(
            out,
            "<rect class=\"box\" x=\"{:.2}\" y=\"{:.2}\" width=\"{:.2}\" height=\"{:.2}\" rx=\"8\" {style}/>",
            r.x, r.y, r.w, r.h
        );
        for t in &l.cluster_text[c] {
            text(&mut out, t, "#222222");
        }
        out.push_str("</g>\n");
    }
    for (n, node) in d.nodes.iter().enumerate() {
        let r = l.nodes[n];
        if r.w <= 0.0 {
            continue;
        }
        let cluster = node.cluster.map(|c| format!(" data-cluster=\"{}\"", esc(&d.clusters[c].id))).unwrap_or_default();
        let _ = writeln!(out, "<g class=\"node\" data-id=\"{}\"{cluster}>", esc(&node.id));
        let (fill, stroke, rx) = match node.kind {
            NodeKind::Internet => ("#bbdefb", "#1565c0", r.h.min(r.w) / 2.0),
            NodeKind::Gateway => ("#e3f2fd", "#1565c0", 6.0),
            NodeKind::External => ("#f3e5f5", "#6a1b9a", 6.0),
            NodeKind::Nacl => (node.fill.unwrap_or("#eeeeee"), "#555555", 4.0),
            NodeKind::Group => ("#ffffff", "#555555", 4.0),
        };
        let _ = writeln!(
            out,
            "<rect class=\"box\" x=\"{:.2}\" y=\"{:.2}\" width=\"{:.2}\" height=\"{:.2}\" rx=\"{rx:.1}\" \
fill=\"{fill}\" stroke=\"{stroke}\"/>",
            r.x, r.y, r.w, r.h
        );
        for t in &l.node_text[n] {
            text(&mut out, t, "#222222");
        }
        out.push_str("</g>\n");
    }
    for (i, e) in d.edges.iter().enumerate() {
        let route = &l.edges[i];
        if route.points.len() < 2 {
            continue;
        }
        let (colour, width, dash) = stroke(e.kind, e.unintended);
        let label = e.label.as_deref().map(|s| format!(" data-label=\"{}\"", esc(s))).unwrap_or_default();
        let _ = writeln!(
            out,
            "<g class=\"edge\" data-from=\"{}\" data-to=\"{}\" data-kind=\"{}\"{label} data-unintended=\"{}\">\
<title>{}</title>",
            esc(d.id_of(e.from)),
            esc(d.id_of(e.to)),
            kind_word(e.kind),
            e.unintended,
            esc(&e.detail)
        );
        // Drawn from the arrowhead back, so arrows bundled into one trunk before their
        // target start their dashes together and the trunk reads as one line.
        let path: Vec<String> = route
            .points
            .iter()
            .rev()
            .enumerate()
            .map(|(k, (x, y))| format!("{}{x:.2} {y:.2}", if k == 0 { "M" } else { "L" }))
            .collect();
        let _ = writeln!(
            out,
            "<path class=\"arrow\" d=\"{}\" fill=\"none\" stroke=\"{colour}\" stroke-width=\"{width}\"{dash}/>",
            path.join(" ")
        );
        if let Some([tip, a, b]) = route.head {
            let _ = writeln!(
                out,
                "<path class=\"arrowhead\" d=\"M{:.2} {:.2} L{:.2} {:.2} L{:.2} {:.2} Z\" fill=\"{colour}\"/>",
                tip.0, tip.1, a.0, a.1, b.0, b.1
            );
        }
        let ink = if e.kind == EdgeKind::Traffic { colour } else { "#333333" };
        for t in &route.label {
            text(&mut out, t, ink);
        }
        out.push_str("</g>\n");
    }
    out.push_str("</svg>\n");
    out
}
