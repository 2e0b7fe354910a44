//! Where everything in the HTML topology picture goes: boxes on a grid, arrows routed
//! at right angles through the channels between the boxes, and labels placed where
//! nothing else is.
//!
//! # Why not a layout library
//!
//! The picture is a compound graph: the VPC holds a box per zone, a zone holds its
//! NACL and group boxes, and arrows join boxes at any depth (a group in one zone to a
//! group in another, the gateway to a zone's NACL, traffic from zone to zone). It must
//! fit a page 1024 px wide and no label may touch another label, a box or an arrow.
//! The pure-Rust layout crates fall short of that: layout-rs (0.1.3, the one that reads
//! DOT) parses `subgraph` but draws no cluster, and its layered layout grows as wide
//! as the widest rank, with no way to wrap it to a width; the layered and force-directed
//! crates place plain nodes and leave clusters, edge routing and edge labels to the
//! caller. What would be left to write around any of them (clusters, routing, labels,
//! a width limit) is most of this file. The structure here is also simple enough that
//! a grid in spec order reads better than a layered drawing would: zones are listed
//! in the order the spec gives them, which is the order their owners think in.
//!
//! # How
//!
//! 1. Zones go on a grid of `columns` columns, in spec order, under a row of the nodes
//!    outside the VPC (internet, gateway, external ranges). The widest grid that fits
//!    [`MAX_WIDTH`] wins; one column always fits, or the page scales it down.
//! 2. Every arrow leaves its box from the left or right side into the vertical channel
//!    beside the box's column, runs along its own track there, crosses in its own lane
//!    of a horizontal channel between two rows, and comes down the channel beside its
//!    target. A labelled arrow always crosses a whole column in its lane, so its label
//!    has a place there that no other arrow crosses.
//! 3. Tracks and lanes are handed out by interval colouring: two arrows share one only
//!    where they do not overlap. Ports on a side sit on a 10 px lattice, offset by 5 px
//!    between left and right sides, so two stubs are never on one line. Arrows of one
//!    kind and colour into the same side of one box share its port and the track to it
//!    (a bundle, drawn as one trunk), so a box that many zones reach stays small.
//! 4. Labels are placed by trying candidate positions along the arrow's lane (centred
//!    over each column it crosses, then at either end, below and above the line) and
//!    keeping the first whose box meets no box, no text and no arrow segment drawn so
//!    far. A label with no free candidate is reported in [`Layout::unplaced`], never
//!    drawn over something; the tests require that list to be empty.
//!
//! Text widths come from DejaVu Sans's advance widths (Debian's default sans-serif)
//! and the SVG pins each text to that width (`textLength`), so a browser with another
//! font draws the same boxes.

use std::collections::BTreeMap;

use super::diagram::{Diagram, EdgeKind, End};

/// The widest picture drawn at full size: a 1024 px window less the page's margins
/// and a scrollbar. Wider pictures are scaled down by the page.
pub const MAX_WIDTH: f64 = 940.0;

/// Most columns tried.
const MAX_COLUMNS: usize = 6;
/// Text in boxes, px.
pub const FONT: f64 = 12.0;
/// The VPC's title, px.
pub const TITLE_FONT: f64 = 13.0;
/// Arrow labels, px.
pub const LABEL_FONT: f64 = 11.0;
const LINE: f64 = 15.0;
const LABEL_LINE: f64 = 13.0;
const NODE_PAD_X: f64 = 8.0;
const NODE_PAD_Y: f64 = 5.0;
const CLUSTER_PAD: f64 = 10.0;
const NODE_GAP: f64 = 10.0;
const HEADER_PAD: f64 = 6.0;
const MIN_COLUMN: f64 = 190.0;
const TOP_SLACK: f64 = 16.0;
const PORT_STEP: f64 = 10.0;
const TRACK: f64 = 8.0;
const CHANNEL_PAD: f64 = 12.0;
const MIN_V: f64 = 24.0;
const MIN_H: f64 = 20.0;
const LANE_PAD: f64 = 4.0;
const LINE_IN_LANE: f64 = 4.0;
const LABEL_GAP: f64 = 4.0;
const TRACK_GAP: f64 = 6.0;
const TITLE_BAND: f64 = 28.0;
const FRAME_PAD: f64 = 4.0;
const MARGIN: f64 = 10.0;
const HEAD: f64 = 8.0;
const HEAD_HALF: f64 = 4.0;
/// Room kept free around a label.
const CLEAR: f64 = 2.0;

/// DejaVu Sans's ascent and descent, in em.
pub const ASCENT: f64 = 0.928;
/// See [`ASCENT`].
pub const DESCENT: f64 = 0.236;

/// Advance widths of DejaVu Sans (Book) for ' '..='~', in thousandths of an em, as
/// Chromium measures them.
const NORMAL: [u16; 95] = [
    318, 401, 460, 838, 636, 950, 780, 275, 390, 390, 500, 838, 318, 361, 318, 337, 636, 636, 636, 636, 636, 636, 636,
    636, 636, 636, 337, 337, 838, 838, 838, 531, 1000, 684, 686, 698, 770, 632, 575, 775, 752, 295, 295, 656, 557, 863,
    748, 787, 603, 787, 695, 635, 611, 732, 684, 989, 685, 611, 685, 390, 337, 390, 838, 500, 500, 613, 635, 550, 635,
    615, 352, 635, 634, 278, 278, 579, 278, 974, 634, 612, 635, 635, 411, 521, 392, 634, 592, 818, 592, 592, 525, 636,
    337, 636, 838,
];
/// The same for DejaVu Sans Bold.
const BOLD: [u16; 95] = [
    348, 456, 521, 838, 696, 1002, 872, 306, 457, 457, 523, 838, 380, 415, 380, 365, 696, 696, 696, 696, 696, 696, 696,
    696, 696, 696, 400, 400, 838, 838, 838, 580, 1000, 774, 762, 734, 830, 683, 683, 821, 837, 372, 372, 775, 637, 995,
    837, 850, 733, 850, 770, 720, 682, 812, 774, 1103, 771, 724, 725, 457, 365, 457, 838, 500, 500, 675, 716, 593, 716,
    678, 435, 716, 712, 343, 343, 665, 343, 1042, 712, 687, 716, 716, 493, 595, 478, 712, 652, 924, 645, 652, 582, 712,
    365, 712, 838,
];

fn advance(c: char, bold: bool) -> f64 {
    let table = if bold { &BOLD } else { &NORMAL };
    let thousandths = match c {
        ' '..='~' => table[c as usize - 32],
        '·' => table[b'.' as usize - 32],
        '‹' | '›' => 412,
        '→' => 838,
        // Anything else: a full em, more than almost any glyph needs.
        _ => 1000,
    };
    f64::from(thousandths)
}

/// How wide `s` is drawn at `size` px.
pub fn text_width(s: &str, size: f64, bold: bool) -> f64 {
    s.chars().map(|c| advance(c, bold)).sum::<f64>() * size / 1000.0
}

/// An axis-aligned rectangle.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rect {
    /// Left.
    pub x: f64,
    /// Top.
    pub y: f64,
    /// Width.
    pub w: f64,
    /// Height.
    pub h: f64,
}

impl Rect {
    /// Right edge.
    pub fn right(&self) -> f64 {
        self.x + self.w
    }

    /// Bottom edge.
    pub fn bottom(&self) -> f64 {
        self.y + self.h
    }

    /// Whether the two share any area (touching edges do not count).
    pub fn overlaps(&self, o: &Rect) -> bool {
        self.x < o.right() && o.x < self.right() && self.y < o.bottom() && o.y < self.bottom()
    }

    /// Whether `o` lies inside (edges may touch).
    pub fn contains(&self, o: &Rect) -> bool {
        o.x >= self.x && o.y >= self.y && o.right() <= self.right() && o.bottom() <= self.bottom()
    }

    /// Grown by `d` on every side (shrunk for negative `d`).
    pub fn inflate(&self, d: f64) -> Rect {
        Rect { x: self.x - d, y: self.y - d, w: self.w + 2.0 * d, h: self.h + 2.0 * d }
    }

    /// Whether the segment from `p` to `q` passes through the inside (Liang–Barsky).
    pub fn hit_by(&self, p: (f64, f64), q: (f64, f64)) -> bool {
        let (dx, dy) = (q.0 - p.0, q.1 - p.1);
        let (mut t0, mut t1) = (0.0_f64, 1.0_f64);
        for (pk, qk) in [(-dx, p.0 - self.x), (dx, self.right() - p.0), (-dy, p.1 - self.y), (dy, self.bottom() - p.1)]
        {
            if pk == 0.0 {
                if qk <= 0.0 {
                    return false;
                }
            } else {
                let r = qk / pk;
                if pk < 0.0 {
                    t0 = t0.max(r);
                } else {
                    t1 = t1.min(r);
                }
            }
        }
        // The open interior: the segment must stay inside for more than a point.
        t1 - t0 > 1e-9
    }
}

/// One line of text, left-aligned at `x`.
#[derive(Debug, Clone, PartialEq)]
pub struct Text {
    /// The words.
    pub text: String,
    /// Left end.
    pub x: f64,
    /// Baseline.
    pub baseline: f64,
    /// Font size, px.
    pub size: f64,
    /// Bold.
    pub bold: bool,
    /// Width the SVG pins it to.
    pub width: f64,
}

impl Text {
    fn new(text: &str, x: f64, baseline: f64, size: f64, bold: bool) -> Text {
        Text { text: text.to_string(), x, baseline, size, bold, width: text_width(text, size, bold) }
    }

    /// The box a browser gives it: advance width by the font's ascent plus descent.
    pub fn rect(&self) -> Rect {
        Rect { x: self.x, y: self.baseline - ASCENT * self.size, w: self.width, h: (ASCENT + DESCENT) * self.size }
    }
}

/// An edge as drawn.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Route {
    /// The line, corner by corner; it stops where the arrowhead starts.
    pub points: Vec<(f64, f64)>,
    /// The arrowhead: tip, then the two back corners.
    pub head: Option<[(f64, f64); 3]>,
    /// The label, line by line (empty when the edge has none, or it found no place).
    pub label: Vec<Text>,
}

/// Everything's place.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Layout {
    /// Picture width.
    pub width: f64,
    /// Picture height.
    pub height: f64,
    /// Columns of the zone grid.
    pub columns: usize,
    /// Per node of the diagram.
    pub nodes: Vec<Rect>,
    /// Per cluster of the diagram.
    pub clusters: Vec<Rect>,
    /// Each node's lines.
    pub node_text: Vec<Vec<Text>>,
    /// Each cluster's title.
    pub cluster_text: Vec<Vec<Text>>,
    /// Per edge of the diagram.
    pub edges: Vec<Route>,
    /// Edges whose label (or, for an end the layout cannot place, whose whole arrow)
    /// found no free place and is not drawn.
    pub unplaced: Vec<usize>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Side {
    Left,
    Right,
}

/// Where a port sits: on a node's side, or on the side of a cluster's title area.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Anchor {
    Node(usize),
    Header(usize),
}

/// Arrow ends that share one port: (edge, 0 for its start or 1 for its end).
type Group = Vec<(usize, usize)>;

/// One edge's route before coordinates.
#[derive(Debug, Clone)]
struct Plan {
    ends: [Anchor; 2],
    sides: [Side; 2],
    /// Vertical channel at each end.
    channels: [usize; 2],
    /// Horizontal channel and lane, when the channels differ.
    lane: Option<(usize, usize)>,
    label: Vec<String>,
    ports: [f64; 2],
    tracks: [usize; 2],
}

/// The layout of a diagram: the widest grid (up to six columns) that fits
/// [`MAX_WIDTH`], or one column.
pub fn layout(d: &Diagram) -> Layout {
    let zones = d.clusters.iter().filter(|c| c.parent.is_some()).count();
    let most = zones.clamp(1, MAX_COLUMNS);
    let mut columns = most;
    loop {
        let l = attempt(d, columns);
        if l.width <= MAX_WIDTH || columns == 1 {
            return l;
        }
        columns -= 1;
    }
}

/// Lines of at most `limit` px: broken at spaces, a longer word after its commas, and
/// a word longer still anywhere.
pub fn wrap(text: &str, size: f64, limit: f64) -> Vec<String> {
    let fits = |s: &str| text_width(s, size, false) <= limit;
    let mut pieces: Vec<(String, bool)> = Vec::new(); // (piece, starts a word)
    for word in text.split(' ').filter(|w| !w.is_empty()) {
        let mut first = true;
        let mut rest = word.to_string();
        while !fits(&rest) {
            let cut = rest
                .char_indices()
                .filter(|&(i, c)| c == ',' && fits(&rest[..i + 1]))
                .map(|(i, _)| i + 1)
                .next_back()
                .or_else(|| rest.char_indices().map(|(i, c)| i + c.len_utf8()).take_while(|&i| fits(&rest[..i])).last())
                .unwrap_or_else(|| rest.chars().next().map_or(rest.len(), char::len_utf8));
            if cut >= rest.len() {
                break;
            }
            pieces.push((rest[..cut].to_string(), first));
            first = false;
            rest = rest[cut..].to_string();
        }
        pieces.push((rest, first));
    }
    let mut lines: Vec<String> = Vec::new();
    for (piece, starts_word) in pieces {
        match lines.last_mut() {
            Some(last) if starts_word && fits(&format!("{last} {piece}")) => {
                last.push(' ');
                last.push_str(&piece);
            }
            _ => lines.push(piece),
        }
    }
    lines
}

fn block_height(lines: usize) -> f64 {
    lines as f64 * LINE
}

/// The baseline of line `i` of a block whose lines are `line` px apart from `top`.
fn baseline(top: f64, i: usize, line: f64, size: f64) -> f64 {
    top + i as f64 * line + (line - (ASCENT + DESCENT) * size) / 2.0 + ASCENT * size
}

/// Interval colouring: the first track whose last interval ends `gap` before this one
/// starts. Returns each interval's track (intervals given in any order) and the count.
fn colour<K: Copy + PartialOrd>(intervals: &[(K, K)], free: impl Fn(K, K) -> bool) -> (Vec<usize>, usize) {
    let mut order: Vec<usize> = (0..intervals.len()).collect();
    order.sort_by(|&a, &b| {
        let (x, y) = (intervals[a], intervals[b]);
        x.0.partial_cmp(&y.0)
            .unwrap_or(std::cmp::Ordering::Equal)
            .then(x.1.partial_cmp(&y.1).unwrap_or(std::cmp::Ordering::Equal))
    });
    let mut ends: Vec<K> = Vec::new();
    let mut track = vec![0; intervals.len()];
    for i in order {
        let (lo, hi) = intervals[i];
        match ends.iter().position(|&end| free(end, lo)) {
            Some(t) => {
                track[i] = t;
                ends[t] = hi;
            }
            None => {
                track[i] = ends.len();
                ends.push(hi);
            }
        }
    }
    let n = ends.len();
    (track, n)
}

fn attempt(d: &Diagram, columns: usize) -> Layout {
    let cols = columns.max(1);
    let frame = d.frame();
    let tops: Vec<usize> = (0..d.nodes.len()).filter(|&n| d.nodes[n].cluster.is_none()).collect();
    let zones: Vec<usize> = (0..d.clusters.len()).filter(|&c| d.clusters[c].parent.is_some()).collect();
    let top_rows = tops.len().div_ceil(cols);
    let rows = top_rows + zones.len().div_ceil(cols);

    // Grid cells: (row, column) of every top node and zone; a zone's nodes share it.
    let mut node_cell: Vec<Option<(usize, usize)>> = vec![None; d.nodes.len()];
    let mut zone_cell: Vec<Option<(usize, usize)>> = vec![None; d.clusters.len()];
    for (i, &n) in tops.iter().enumerate() {
        node_cell[n] = Some((i / cols, i % cols));
    }
    for (i, &z) in zones.iter().enumerate() {
        zone_cell[z] = Some((top_rows + i / cols, i % cols));
    }
    let mut members: Vec<Vec<usize>> = vec![Vec::new(); d.clusters.len()];
    for (n, node) in d.nodes.iter().enumerate() {
        if let Some(c) = node.cluster.filter(|&c| zone_cell[c].is_some()) {
            node_cell[n] = zone_cell[c];
            members[c].push(n);
        }
    }

    // Natural sizes.
    let lines_width = |lines: &[String], first_bold: bool, size: f64| {
        lines.iter().enumerate().map(|(i, s)| text_width(s, size, first_bold && i == 0)).fold(0.0, f64::max)
    };
    let node_w: Vec<f64> = d.nodes.iter().map(|n| lines_width(&n.lines, false, FONT) + 2.0 * NODE_PAD_X).collect();
    let mut col_w = vec![MIN_COLUMN; cols];
    for &z in &zones {
        let (_, col) = zone_cell[z].expect("zones have cells");
        let inner = members[z].iter().map(|&n| node_w[n]).fold(lines_width(&d.clusters[z].title, true, FONT), f64::max);
        col_w[col] = col_w[col].max(inner + 2.0 * CLUSTER_PAD);
    }
    for &n in &tops {
        let (_, col) = node_cell[n].expect("top nodes have cells");
        col_w[col] = col_w[col].max(node_w[n] + 2.0 * TOP_SLACK);
    }
    let frame_title = frame.map(|f| d.clusters[f].title.join(" ")).unwrap_or_default();
    col_w[0] = col_w[0].max(text_width(&frame_title, TITLE_FONT, true) + 8.0);

    // Sides and channels.
    let anchor = |e: End| match e {
        End::Node(n) => Anchor::Node(n),
        End::Cluster(c) => Anchor::Header(c),
    };
    let cell = |a: Anchor| match a {
        Anchor::Node(n) => node_cell[n],
        Anchor::Header(c) => zone_cell[c],
    };
    let mut unplaced = Vec::new();
    let mut plans: Vec<Option<Plan>> = Vec::new();
    let mut load = vec![0usize; rows + 1];
    for (i, e) in d.edges.iter().enumerate() {
        let ends = [anchor(e.from), anchor(e.to)];
        let (Some((ra, ca)), Some((rb, cb))) = (cell(ends[0]), cell(ends[1])) else {
            unplaced.push(i);
            plans.push(None);
            continue;
        };
        let channel = |col: usize, s: Side| if s == Side::Left { col } else { col + 1 };
        let away = |s: Side, from: usize, to: usize| {
            (to > from && s == Side::Left) as u8 as f64 * 0.5 + (to < from && s == Side::Right) as u8 as f64 * 0.5
        };
        let labelled = e.label.is_some();
        let (sides, channels) = [
            [Side::Right, Side::Left],
            [Side::Left, Side::Right],
            [Side::Right, Side::Right],
            [Side::Left, Side::Left],
        ]
        .into_iter()
        .map(|s| (s, [channel(ca, s[0]), channel(cb, s[1])]))
        .filter(|(_, v)| !labelled || v[0] != v[1])
        .min_by(|(s, v), (t, w)| {
            let cost =
                |s: &[Side; 2], v: &[usize; 2]| v[0].abs_diff(v[1]) as f64 + away(s[0], ca, cb) + away(s[1], cb, ca);
            cost(s, v).partial_cmp(&cost(t, w)).unwrap_or(std::cmp::Ordering::Equal)
        })
        .expect("some pair of sides leaves by different channels");
        let lane = (channels[0] != channels[1]).then(|| {
            let candidates: Vec<usize> = if ra == rb {
                if ra < top_rows { vec![ra] } else { vec![ra, ra + 1] }
            } else {
                (ra.min(rb) + 1..=ra.max(rb)).collect()
            };
            let distance = |k: usize| if k <= rb { rb - k } else { k - rb - 1 };
            let k = candidates
                .into_iter()
                .min_by_key(|&k| (load[k], distance(k)))
                .expect("a channel lies between any two rows");
            load[k] += 1;
            (k, 0)
        });
        plans.push(Some(Plan { ends, sides, channels, lane, label: Vec::new(), ports: [0.0; 2], tracks: [0; 2] }));
    }

    // Lanes of the horizontal channels, and the labels' lines.
    let mut lane_h: Vec<Vec<f64>> = vec![Vec::new(); rows + 1];
    for (k, heights) in lane_h.iter_mut().enumerate() {
        let mine: Vec<usize> =
            (0..plans.len()).filter(|&i| plans[i].as_ref().and_then(|p| p.lane).is_some_and(|l| l.0 == k)).collect();
        let spans: Vec<(usize, usize)> = mine
            .iter()
            .map(|&i| {
                let c = plans[i].as_ref().expect("planned").channels;
                (c[0].min(c[1]), c[0].max(c[1]))
            })
            .collect();
        let (lanes, count) = colour(&spans, |end, lo| end < lo);
        *heights = vec![LINE_IN_LANE * 2.0; count];
        for (j, &i) in mine.iter().enumerate() {
            let (lo, hi) = spans[j];
            let p = plans[i].as_mut().expect("planned");
            p.lane = Some((k, lanes[j]));
            if let Some(label) = &d.edges[i].label {
                let room = (lo..hi).map(|c| col_w[c]).fold(0.0, f64::max) - 12.0;
                p.label = wrap(label, LABEL_FONT, room);
                let h = LINE_IN_LANE + LABEL_GAP + p.label.len() as f64 * LABEL_LINE + LABEL_GAP;
                heights[lanes[j]] = heights[lanes[j]].max(h);
            }
        }
    }
    let chan_h: Vec<f64> = (0..=rows)
        .map(|k| {
            let min = if k == 0 && top_rows > 0 { LANE_PAD } else { MIN_H };
            (lane_h[k].iter().sum::<f64>() + 2.0 * LANE_PAD).max(min)
        })
        .collect();

    // Ports per side, then heights. Arrows of one kind and colour that come into the
    // same side of the same box through lanes share a port and a track (a bundle):
    // a box many zones reach gets one trunk, not one line each.
    let mut ports: BTreeMap<(Anchor, Side), Vec<Group>> = BTreeMap::new();
    let mut bundles: BTreeMap<(Anchor, Side, EdgeKind, bool), usize> = BTreeMap::new();
    for (i, p) in plans.iter().enumerate() {
        let Some(p) = p else { continue };
        for end in 0..2 {
            let groups = ports.entry((p.ends[end], p.sides[end])).or_default();
            let e = &d.edges[i];
            if end == 1 && p.lane.is_some() {
                let key = (p.ends[1], p.sides[1], e.kind, e.unintended);
                if let Some(&g) = bundles.get(&key) {
                    groups[g].push((i, end));
                    continue;
                }
                bundles.insert(key, groups.len());
            }
            groups.push(vec![(i, end)]);
        }
    }
    let most_ports = |a: Anchor| {
        [Side::Left, Side::Right].iter().map(|&s| ports.get(&(a, s)).map_or(0, Vec::len)).max().unwrap_or(0) as f64
    };
    let node_h: Vec<f64> = (0..d.nodes.len())
        .map(|n| {
            (block_height(d.nodes[n].lines.len()) + 2.0 * NODE_PAD_Y)
                .max(PORT_STEP * most_ports(Anchor::Node(n)) + 10.0)
        })
        .collect();
    let header_h: Vec<f64> = (0..d.clusters.len())
        .map(|c| {
            (2.0 * HEADER_PAD + block_height(d.clusters[c].title.len()))
                .max(PORT_STEP * most_ports(Anchor::Header(c)) + 10.0)
        })
        .collect();
    let zone_h: Vec<f64> = (0..d.clusters.len())
        .map(|c| {
            let nodes: f64 = members[c].iter().map(|&n| node_h[n]).sum::<f64>()
                + NODE_GAP * members[c].len().saturating_sub(1) as f64;
            header_h[c] + nodes + CLUSTER_PAD
        })
        .collect();
    let mut row_h = vec![0.0_f64; rows];
    for &n in &tops {
        let (r, _) = node_cell[n].expect("cell");
        row_h[r] = row_h[r].max(node_h[n]);
    }
    for &z in &zones {
        let (r, _) = zone_cell[z].expect("cell");
        row_h[r] = row_h[r].max(zone_h[z]);
    }

    // Rows and channels from the top.
    let mut y = MARGIN;
    let mut chan_y = vec![0.0; rows + 1];
    let mut row_y = vec![0.0; rows];
    let mut frame_top = y;
    for k in 0..=rows {
        if k == top_rows {
            frame_top = y;
            y += TITLE_BAND;
        }
        chan_y[k] = y;
        y += chan_h[k];
        if k < rows {
            row_y[k] = y;
            y += row_h[k];
        }
    }
    let frame_bottom = y + FRAME_PAD;
    let height = frame_bottom + MARGIN;
    let lane_y = |k: usize, lane: usize| chan_y[k] + LANE_PAD + lane_h[k][..lane].iter().sum::<f64>() + LINE_IN_LANE;

    let mut node_y = vec![0.0; d.nodes.len()];
    let mut zone_y = vec![0.0; d.clusters.len()];
    for &n in &tops {
        node_y[n] = row_y[node_cell[n].expect("cell").0];
    }
    for &z in &zones {
        zone_y[z] = row_y[zone_cell[z].expect("cell").0];
        let mut at = zone_y[z] + header_h[z];
        for &n in &members[z] {
            node_y[n] = at;
            at += node_h[n] + NODE_GAP;
        }
    }
    let span = |a: Anchor| match a {
        Anchor::Node(n) => (node_y[n], node_y[n] + node_h[n]),
        Anchor::Header(c) => (zone_y[c], zone_y[c] + header_h[c]),
    };

    // Ports on the lattice, in the order of where their arrows go next.
    for ((a, side), list) in &ports {
        let (top, bottom) = span(*a);
        let offset = if *side == Side::Right { 0.0 } else { PORT_STEP / 2.0 };
        let mut spots = Vec::new();
        let mut p = ((top + 5.0 - offset) / PORT_STEP - 1e-9).ceil() * PORT_STEP + offset;
        while p <= bottom - 5.0 + 1e-9 {
            spots.push(p);
            p += PORT_STEP;
        }
        let next = |&(i, end): &(usize, usize)| -> f64 {
            let plan = plans[i].as_ref().expect("planned");
            match plan.lane {
                Some((k, l)) => lane_y(k, l),
                None => {
                    let (t, b) = span(plan.ends[1 - end]);
                    (t + b) / 2.0
                }
            }
        };
        let first = |g: &Group| g.iter().map(next).fold(f64::MAX, f64::min);
        let mut sorted = list.clone();
        sorted.sort_by(|x, y| first(x).partial_cmp(&first(y)).unwrap_or(std::cmp::Ordering::Equal).then(x.cmp(y)));
        let (m, n) = (spots.len(), sorted.len());
        for (j, group) in sorted.iter().enumerate() {
            let spot = spots[((2 * j + 1) * m / (2 * n)).min(m.saturating_sub(1))];
            for &(i, end) in group {
                plans[i].as_mut().expect("planned").ports[end] = spot;
            }
        }
    }

    // Tracks of the vertical channels: one interval per arrow end, or per bundle (from
    // its port to the farthest of its lanes).
    let mut verticals: Vec<Vec<(Group, f64, f64)>> = vec![Vec::new(); cols + 1];
    for group in ports.values().flatten() {
        let (i, end) = group[0];
        let p = plans[i].as_ref().expect("planned");
        let other = match p.lane {
            Some(_) => None,
            None if end == 0 => Some(p.ports[1]),
            // A lane-less arrow has one vertical, entered from its start.
            None => continue,
        };
        let ys = group.iter().map(|&(i, _)| {
            let q = plans[i].as_ref().expect("planned");
            q.lane.map_or(other.unwrap_or(q.ports[1]), |(k, l)| lane_y(k, l))
        });
        let (lo, hi) = ys.fold((p.ports[end], p.ports[end]), |(lo, hi), y| (lo.min(y), hi.max(y)));
        verticals[p.channels[end]].push((group.clone(), lo, hi));
    }
    let mut chan_w = vec![MIN_V; cols + 1];
    let mut track_count = vec![0usize; cols + 1];
    for j in 0..=cols {
        let spans: Vec<(f64, f64)> = verticals[j].iter().map(|v| (v.1, v.2)).collect();
        let (tracks, count) = colour(&spans, |end, lo| end + TRACK_GAP < lo);
        for (v, t) in verticals[j].iter().zip(tracks) {
            for &(i, end) in &v.0 {
                let plan = plans[i].as_mut().expect("planned");
                plan.tracks[end] = t;
                if plan.lane.is_none() {
                    plan.tracks[1] = t;
                }
            }
        }
        track_count[j] = count;
        chan_w[j] = chan_w[j].max(2.0 * CHANNEL_PAD + count.saturating_sub(1) as f64 * TRACK);
    }

    // Columns and channels from the left.
    let mut x = MARGIN + FRAME_PAD;
    let mut chan_x = vec![0.0; cols + 1];
    let mut col_x = vec![0.0; cols];
    for j in 0..=cols {
        chan_x[j] = x;
        x += chan_w[j];
        if j < cols {
            col_x[j] = x;
            x += col_w[j];
        }
    }
    let width = x + FRAME_PAD + MARGIN;
    let track_x = |j: usize, t: usize| {
        let used = track_count[j].saturating_sub(1) as f64 * TRACK;
        chan_x[j] + (chan_w[j] - used) / 2.0 + t as f64 * TRACK
    };

    // Boxes and their text.
    let mut clusters = vec![Rect { x: 0.0, y: 0.0, w: 0.0, h: 0.0 }; d.clusters.len()];
    let mut nodes = vec![Rect { x: 0.0, y: 0.0, w: 0.0, h: 0.0 }; d.nodes.len()];
    let mut node_text = vec![Vec::new(); d.nodes.len()];
    let mut cluster_text = vec![Vec::new(); d.clusters.len()];
    if let Some(f) = frame {
        clusters[f] = Rect { x: MARGIN, y: frame_top, w: width - 2.0 * MARGIN, h: frame_bottom - frame_top };
        let top = frame_top + (TITLE_BAND - LINE) / 2.0;
        cluster_text[f] =
            vec![Text::new(&frame_title, col_x[0] + 4.0, baseline(top, 0, LINE, TITLE_FONT), TITLE_FONT, true)];
    }
    for &z in &zones {
        let (_, col) = zone_cell[z].expect("cell");
        let r = Rect { x: col_x[col], y: zone_y[z], w: col_w[col], h: zone_h[z] };
        clusters[z] = r;
        let top = r.y + HEADER_PAD;
        cluster_text[z] = d.clusters[z]
            .title
            .iter()
            .enumerate()
            .map(|(i, s)| Text::new(s, r.x + CLUSTER_PAD, baseline(top, i, LINE, FONT), FONT, i == 0))
            .collect();
        for &n in &members[z] {
            nodes[n] = Rect { x: r.x + CLUSTER_PAD, y: node_y[n], w: r.w - 2.0 * CLUSTER_PAD, h: node_h[n] };
        }
    }
    for &n in &tops {
        let (_, col) = node_cell[n].expect("cell");
        nodes[n] = Rect { x: col_x[col] + (col_w[col] - node_w[n]) / 2.0, y: node_y[n], w: node_w[n], h: node_h[n] };
    }
    for (n, node) in d.nodes.iter().enumerate() {
        if node_cell[n].is_none() {
            continue;
        }
        let r = nodes[n];
        let top = r.y + (r.h - block_height(node.lines.len())) / 2.0;
        node_text[n] = node
            .lines
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let w = text_width(s, FONT, false);
                let x = if node.cluster.is_none() { r.x + (r.w - w) / 2.0 } else { r.x + NODE_PAD_X };
                Text::new(s, x, baseline(top, i, LINE, FONT), FONT, false)
            })
            .collect();
    }

    // Lines and arrowheads.
    let port_x = |a: Anchor, s: Side| {
        let r = match a {
            Anchor::Node(n) => nodes[n],
            Anchor::Header(c) => clusters[c],
        };
        if s == Side::Left { r.x } else { r.right() }
    };
    let mut edges = vec![Route::default(); d.edges.len()];
    for (i, p) in plans.iter().enumerate() {
        let Some(p) = p else { continue };
        let start = (port_x(p.ends[0], p.sides[0]), p.ports[0]);
        let end = (port_x(p.ends[1], p.sides[1]), p.ports[1]);
        let xa = track_x(p.channels[0], p.tracks[0]);
        let xb = track_x(p.channels[1], p.tracks[1]);
        let mut points = vec![start, (xa, start.1)];
        if let Some((k, l)) = p.lane {
            let ly = lane_y(k, l);
            points.extend([(xa, ly), (xb, ly)]);
        }
        points.extend([(xb, end.1), end]);
        points.dedup();
        let head = (d.edges[i].kind != EdgeKind::Link).then(|| {
            let dir = if end.0 >= xb { 1.0 } else { -1.0 };
            let base = end.0 - dir * HEAD;
            if let Some(last) = points.last_mut() {
                last.0 = base;
            }
            [end, (base, end.1 - HEAD_HALF), (base, end.1 + HEAD_HALF)]
        });
        edges[i] = Route { points, head, label: Vec::new() };
    }

    // Labels, each at the first candidate that meets nothing.
    let mut taken: Vec<Rect> = Vec::new();
    taken.extend(nodes.iter().enumerate().filter(|(n, _)| node_cell[*n].is_some()).map(|(_, r)| *r));
    taken.extend(zones.iter().map(|&z| clusters[z]));
    taken.extend(node_text.iter().chain(&cluster_text).flatten().map(Text::rect));
    taken.extend(edges.iter().filter_map(|e| e.head).map(|h| head_rect(&h)));
    let mut segments: Vec<((f64, f64), (f64, f64))> =
        edges.iter().flat_map(|e| e.points.windows(2).map(|w| (w[0], w[1]))).collect();
    if let Some(f) = frame {
        let r = clusters[f];
        let corners = [(r.x, r.y), (r.right(), r.y), (r.right(), r.bottom()), (r.x, r.bottom())];
        segments.extend((0..4).map(|i| (corners[i], corners[(i + 1) % 4])));
    }
    let picture = Rect { x: 0.0, y: 0.0, w: width, h: height };
    for (i, p) in plans.iter().enumerate() {
        let Some(p) = p else { continue };
        if d.edges[i].label.is_none() {
            continue;
        }
        let Some((k, l)) = p.lane else {
            unplaced.push(i);
            continue;
        };
        let ly = lane_y(k, l);
        let (lo, hi) = (p.channels[0].min(p.channels[1]), p.channels[0].max(p.channels[1]));
        let bw = p.label.iter().map(|s| text_width(s, LABEL_FONT, false)).fold(0.0, f64::max);
        let bh = p.label.len() as f64 * LABEL_LINE;
        let mut spans: Vec<usize> = (lo..hi).collect();
        let middle = (lo + hi) as f64 / 2.0 - 0.5;
        spans.sort_by(|a, b| {
            (*a as f64 - middle).abs().partial_cmp(&(*b as f64 - middle).abs()).unwrap_or(std::cmp::Ordering::Equal)
        });
        let candidates = spans.iter().flat_map(|&c| {
            let (left, right) = (col_x[c], col_x[c] + col_w[c]);
            [left + (right - left - bw) / 2.0, left + 6.0, right - 6.0 - bw]
                .into_iter()
                .flat_map(move |x| [(x, ly + LABEL_GAP), (x, ly - LABEL_GAP - bh)])
        });
        let free = |r: &Rect| {
            let room = r.inflate(CLEAR);
            picture.contains(r)
                && !taken.iter().any(|t| t.overlaps(&room))
                && !segments.iter().any(|&(a, b)| room.hit_by(a, b))
        };
        let found = candidates.map(|(x, y)| Rect { x, y, w: bw, h: bh }).find(|r| free(r));
        match found {
            Some(r) => {
                let texts: Vec<Text> = p
                    .label
                    .iter()
                    .enumerate()
                    .map(|(j, s)| Text::new(s, r.x, baseline(r.y, j, LABEL_LINE, LABEL_FONT), LABEL_FONT, false))
                    .collect();
                taken.push(r);
                edges[i].label = texts;
            }
            None => unplaced.push(i),
        }
    }
    unplaced.sort_unstable();
    Layout { width, height, columns: cols, nodes, clusters, node_text, cluster_text, edges, unplaced }
}

/// The box around an arrowhead.
pub fn head_rect(h: &[(f64, f64); 3]) -> Rect {
    let (xs, ys): (Vec<f64>, Vec<f64>) = h.iter().copied().unzip();
    let (x0, x1) = (xs.iter().copied().fold(f64::MAX, f64::min), xs.iter().copied().fold(f64::MIN, f64::max));
    let (y0, y1) = (ys.iter().copied().fold(f64::MAX, f64::min), ys.iter().copied().fold(f64::MIN, f64::max));
    Rect { x: x0, y: y0, w: x1 - x0, h: y1 - y0 }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::plan::Plan;
    use crate::spec::{self, SpecSource};
    use crate::topology::diagram::{Cluster, Edge, Node, NodeKind};
    use crate::topology::{self, synthetic};

    type Seg = ((f64, f64), (f64, f64));

    /// Every rule the picture keeps, checked by brute force over everything drawn and
    /// without the layout's own bookkeeping: what it says is wrong, one line each.
    fn problems(d: &Diagram, l: &Layout) -> Vec<String> {
        let mut bad = Vec::new();
        let eps = 0.01;
        // Every text, with what it belongs to: a node, a cluster, or an edge.
        #[derive(Clone, Copy, PartialEq)]
        enum Owner {
            Node(usize),
            Cluster(usize),
            Edge(usize),
        }
        let mut texts: Vec<(Owner, &Text)> = Vec::new();
        for (n, ts) in l.node_text.iter().enumerate() {
            texts.extend(ts.iter().map(|t| (Owner::Node(n), t)));
        }
        for (c, ts) in l.cluster_text.iter().enumerate() {
            texts.extend(ts.iter().map(|t| (Owner::Cluster(c), t)));
        }
        for (e, r) in l.edges.iter().enumerate() {
            texts.extend(r.label.iter().map(|t| (Owner::Edge(e), t)));
        }
        let name = |o: Owner| match o {
            Owner::Node(n) => format!("node {}", d.nodes[n].id),
            Owner::Cluster(c) => format!("cluster {}", d.clusters[c].id),
            Owner::Edge(e) => format!("edge {e} {}→{}", d.id_of(d.edges[e].from), d.id_of(d.edges[e].to)),
        };
        let picture = Rect { x: 0.0, y: 0.0, w: l.width, h: l.height };
        for (i, (oa, a)) in texts.iter().enumerate() {
            let ra = a.rect();
            if !picture.contains(&ra) {
                bad.push(format!("text {:?} of {} leaves the picture", a.text, name(*oa)));
            }
            for (ob, b) in &texts[i + 1..] {
                if ra.inflate(-eps).overlaps(&b.rect()) {
                    bad.push(format!("text {:?} of {} overlaps {:?} of {}", a.text, name(*oa), b.text, name(*ob)));
                }
            }
            // Boxes: a text lies inside its own node and the clusters that hold it, and
            // off every other node and zone; it never crosses the frame's border.
            for (n, r) in l.nodes.iter().enumerate() {
                if *oa == Owner::Node(n) {
                    if !r.contains(&ra) {
                        bad.push(format!("text {:?} spills out of its node {}", a.text, d.nodes[n].id));
                    }
                } else if r.overlaps(&ra.inflate(-eps)) {
                    bad.push(format!("text {:?} of {} lies on node {}", a.text, name(*oa), d.nodes[n].id));
                }
            }
            let holder = match *oa {
                Owner::Node(n) => d.nodes[n].cluster,
                Owner::Cluster(c) => Some(c),
                Owner::Edge(_) => None,
            };
            for (c, r) in l.clusters.iter().enumerate() {
                let inside = holder.is_some_and(|h| d.within(h, c));
                let frame = d.clusters.iter().any(|k| k.parent == Some(c));
                if inside {
                    if !r.contains(&ra) {
                        bad.push(format!("text {:?} spills out of cluster {}", a.text, d.clusters[c].id));
                    }
                } else if frame {
                    if r.overlaps(&ra.inflate(-eps)) && !r.contains(&ra) {
                        bad.push(format!(
                            "text {:?} of {} crosses the border of {}",
                            a.text,
                            name(*oa),
                            d.clusters[c].id
                        ));
                    }
                } else if r.overlaps(&ra.inflate(-eps)) {
                    bad.push(format!("text {:?} of {} lies on zone {}", a.text, name(*oa), d.clusters[c].id));
                }
            }
        }
        // Arrows: no segment or arrowhead meets a text; no segment runs through a node
        // or through a zone it does not start or end in; no two edges share a stretch.
        let segs: Vec<(usize, Seg)> =
            l.edges.iter().enumerate().flat_map(|(e, r)| r.points.windows(2).map(move |w| (e, (w[0], w[1])))).collect();
        for &(e, (p, q)) in &segs {
            for (o, t) in &texts {
                if t.rect().inflate(1.0).hit_by(p, q) {
                    bad.push(format!("edge {e} runs through text {:?} of {}", t.text, name(*o)));
                }
            }
            for (n, r) in l.nodes.iter().enumerate() {
                if r.inflate(-0.5).hit_by(p, q) {
                    bad.push(format!("edge {e} runs through node {}", d.nodes[n].id));
                }
            }
            let edge = &d.edges[e];
            let ends_in = |c: usize, end: End| match end {
                End::Node(n) => d.nodes[n].cluster.is_some_and(|h| d.within(h, c)),
                End::Cluster(k) => d.within(k, c),
            };
            for (c, r) in l.clusters.iter().enumerate() {
                let frame = d.clusters.iter().any(|k| k.parent == Some(c));
                if frame || ends_in(c, edge.from) || ends_in(c, edge.to) {
                    continue;
                }
                if r.inflate(-0.5).hit_by(p, q) {
                    bad.push(format!("edge {e} runs through zone {}", d.clusters[c].id));
                }
            }
        }
        for (e, r) in l.edges.iter().enumerate() {
            if let Some(h) = r.head {
                let hr = head_rect(&h);
                for (o, t) in &texts {
                    if hr.overlaps(&t.rect()) {
                        bad.push(format!("arrowhead of edge {e} lies on text {:?} of {}", t.text, name(*o)));
                    }
                }
            }
        }
        // Arrows into one box of one kind and colour may share their last stretch (a
        // bundle); any other two may only cross.
        let bundled = |e: usize, f: usize| {
            let (a, b) = (&d.edges[e], &d.edges[f]);
            a.to == b.to && a.kind == b.kind && a.unintended == b.unintended
        };
        for (i, &(e, (p, q))) in segs.iter().enumerate() {
            for &(f, (s, t)) in &segs[i + 1..] {
                if e == f || bundled(e, f) {
                    continue;
                }
                let horizontal = |a: (f64, f64), b: (f64, f64)| (a.1 - b.1).abs() < eps;
                let overlap =
                    |a0: f64, a1: f64, b0: f64, b1: f64| a0.max(a1).min(b0.max(b1)) - a0.min(a1).max(b0.min(b1));
                let shared = if horizontal(p, q) && horizontal(s, t) && (p.1 - s.1).abs() < 1.0 {
                    overlap(p.0, q.0, s.0, t.0)
                } else if !horizontal(p, q) && !horizontal(s, t) && (p.0 - s.0).abs() < 1.0 {
                    overlap(p.1, q.1, s.1, t.1)
                } else {
                    0.0
                };
                if shared > 0.5 {
                    bad.push(format!("edges {e} and {f} share a stretch of {shared:.1} px"));
                }
            }
        }
        // Boxes: nodes apart and inside their clusters, zones apart and in the frame.
        for (a, ra) in l.nodes.iter().enumerate() {
            for (b, rb) in l.nodes.iter().enumerate().skip(a + 1) {
                if ra.overlaps(rb) {
                    bad.push(format!("nodes {} and {} overlap", d.nodes[a].id, d.nodes[b].id));
                }
            }
            if let Some(c) = d.nodes[a].cluster {
                if !l.clusters[c].contains(ra) {
                    bad.push(format!("node {} spills out of {}", d.nodes[a].id, d.clusters[c].id));
                }
            } else if l.clusters.iter().any(|r| r.overlaps(ra)) {
                bad.push(format!("node {} lies on a cluster", d.nodes[a].id));
            }
        }
        for (a, ra) in l.clusters.iter().enumerate() {
            if let Some(p) = d.clusters[a].parent.filter(|&p| !l.clusters[p].contains(ra)) {
                bad.push(format!("cluster {} spills out of {}", d.clusters[a].id, d.clusters[p].id));
            }
            for (b, rb) in l.clusters.iter().enumerate().skip(a + 1) {
                if d.clusters[a].parent == d.clusters[b].parent && ra.overlaps(rb) {
                    bad.push(format!("clusters {} and {} overlap", d.clusters[a].id, d.clusters[b].id));
                }
            }
        }
        // Every edge drawn, every label drawn, and the picture within the width.
        for (e, edge) in d.edges.iter().enumerate() {
            if l.edges[e].points.len() < 2 {
                bad.push(format!("edge {e} is not drawn"));
            }
            if let Some(label) = &edge.label {
                let drawn: String = l.edges[e].label.iter().map(|t| t.text.as_str()).collect();
                if drawn.replace(' ', "") != label.replace(' ', "") {
                    bad.push(format!("edge {e}: label {label:?} drawn as {drawn:?}"));
                }
            }
        }
        if l.width > MAX_WIDTH && l.columns > 1 {
            bad.push(format!("{} px wide with {} columns", l.width, l.columns));
        }
        bad
    }

    fn scenario(name: &str) -> Diagram {
        let (s, src) = spec::load(name).unwrap();
        let plan = Plan::from_spec(&s, &src).unwrap();
        let (o, b) = crate::reach::designed(&plan);
        let r = crate::reach::analyse(&plan, &o, &b);
        Diagram::new(&topology::topology(&plan, &o, &b), Some(&r))
    }

    fn synthetic_diagram(zones: usize) -> Diagram {
        let (s, src) = spec::parse(SpecSource { path: "synthetic.toml".into(), text: synthetic::spec(zones) }).unwrap();
        let plan = Plan::from_spec(&s, &src).unwrap();
        let (o, b) = crate::reach::designed(&plan);
        let r = crate::reach::analyse(&plan, &o, &b);
        Diagram::new(&topology::topology(&plan, &o, &b), Some(&r))
    }

    #[test]
    fn every_builtin_scenario_is_laid_out_without_overlaps() {
        for (name, _) in spec::BUILTIN_SCENARIOS {
            let d = scenario(name);
            let l = layout(&d);
            let bad = problems(&d, &l);
            assert!(bad.is_empty(), "{name}:\n{}", bad.join("\n"));
            assert!(l.width <= MAX_WIDTH, "{name}: {} px", l.width);
        }
    }

    #[test]
    fn twenty_zones_are_laid_out_without_overlaps_within_the_width() {
        let d = synthetic_diagram(20);
        assert_eq!(d.clusters.len(), 21);
        let l = layout(&d);
        let bad = problems(&d, &l);
        assert!(bad.is_empty(), "{}", bad.join("\n"));
        assert!(l.width <= MAX_WIDTH, "{} px", l.width);
    }

    /// The oracle finds what it is meant to find: a label moved onto a box, two labels
    /// on one spot, an arrow through a text.
    #[test]
    fn the_overlap_oracle_sees_overlaps() {
        let d = scenario("recipe");
        let good = layout(&d);
        assert!(problems(&d, &good).is_empty());
        let labelled = (0..d.edges.len()).filter(|&e| !good.edges[e].label.is_empty()).collect::<Vec<_>>();
        let mut on_box = good.clone();
        let node = on_box.nodes[d.nodes.iter().position(|n| n.kind == NodeKind::Nacl).unwrap()];
        on_box.edges[labelled[0]].label[0].x = node.x + 2.0;
        on_box.edges[labelled[0]].label[0].baseline = node.y + 14.0;
        assert!(problems(&d, &on_box).iter().any(|p| p.contains("lies on node")), "{:?}", problems(&d, &on_box));
        let mut stacked = good.clone();
        stacked.edges[labelled[1]].label[0] = stacked.edges[labelled[0]].label[0].clone();
        assert!(problems(&d, &stacked).iter().any(|p| p.contains("overlaps")));
        let mut crossing = good.clone();
        let t = crossing.edges[labelled[0]].label[0].rect();
        crossing.edges[0].points.push((t.x + t.w / 2.0, t.y - 20.0));
        crossing.edges[0].points.push((t.x + t.w / 2.0, t.bottom() + 20.0));
        assert!(problems(&d, &crossing).iter().any(|p| p.contains("runs through text")));
    }

    #[test]
    fn wrapping_keeps_every_word_and_the_limit() {
        let lines = wrap("tcp/22,80,443,3306,5432,6379,8080,8443 udp/53,161 icmp", LABEL_FONT, 120.0);
        assert!(lines.len() > 2, "{lines:?}");
        assert!(lines.iter().all(|s| text_width(s, LABEL_FONT, false) <= 120.0), "{lines:?}");
        assert_eq!(lines.concat().replace(' ', ""), "tcp/22,80,443,3306,5432,6379,8080,8443udp/53,161icmp");
    }

    /// Diagrams of any shape the model allows: up to 24 zones, up to 5 groups a zone,
    /// external ranges, a gateway or none, any edges between any ends, labels and
    /// names of any length from wide and narrow letters.
    fn arb_diagram() -> impl Strategy<Value = Diagram> {
        let word = "[a-zA-Z0-9WMmil./,:-]{1,30}";
        let label = proptest::collection::vec(word, 1..5).prop_map(|w| w.join(" "));
        (
            proptest::collection::vec(0usize..6, 1..25),
            0usize..4,
            any::<bool>(),
            proptest::collection::vec(word, 64),
            proptest::collection::vec((any::<u32>(), any::<u32>(), 0u8..4, any::<bool>()), 0..60),
            proptest::collection::vec(label, 60),
        )
            .prop_map(|(zones, externals, gateway, words, edges, labels)| {
                let mut d = Diagram::default();
                let mut w = words.iter().cycle();
                let node = |d: &mut Diagram, kind, lines: Vec<String>, cluster| {
                    let id = format!("N{}", d.nodes.len());
                    d.nodes.push(Node { id, kind, lines, cluster, fill: None });
                };
                node(&mut d, NodeKind::Internet, vec!["Internet".into()], None);
                if gateway {
                    node(&mut d, NodeKind::Gateway, vec!["Internet Gateway".into(), w.next().unwrap().clone()], None);
                }
                for _ in 0..externals {
                    node(&mut d, NodeKind::External, vec![w.next().unwrap().clone()], None);
                }
                d.clusters.push(Cluster {
                    id: "VPC".into(),
                    title: vec![w.next().unwrap().clone()],
                    parent: None,
                    colour: None,
                });
                for (z, groups) in zones.iter().enumerate() {
                    let title = vec![format!("{} zone", w.next().unwrap()), w.next().unwrap().clone()];
                    d.clusters.push(Cluster { id: format!("Z{z}"), title, parent: Some(0), colour: None });
                    let c = d.clusters.len() - 1;
                    let nacl = (0..1 + z % 3).map(|_| w.next().unwrap().clone()).collect();
                    node(&mut d, NodeKind::Nacl, nacl, Some(c));
                    for _ in 0..*groups {
                        node(
                            &mut d,
                            NodeKind::Group,
                            vec![w.next().unwrap().clone(), w.next().unwrap().clone()],
                            Some(c),
                        );
                    }
                }
                let (nodes, clusters) = (d.nodes.len(), d.clusters.len());
                for (i, (a, b, kind, to_zone)) in edges.into_iter().enumerate() {
                    let kind = [EdgeKind::Link, EdgeKind::Route, EdgeKind::Reference, EdgeKind::Traffic][kind as usize];
                    let end = |x: u32, zone: bool| {
                        if zone && clusters > 1 {
                            End::Cluster(1 + x as usize % (clusters - 1))
                        } else {
                            End::Node(x as usize % nodes)
                        }
                    };
                    let labelled = matches!(kind, EdgeKind::Reference | EdgeKind::Traffic);
                    d.edges.push(Edge {
                        from: end(a, to_zone && kind == EdgeKind::Traffic),
                        to: end(b, to_zone),
                        kind,
                        label: labelled.then(|| labels[i].clone()),
                        unintended: i % 5 == 0,
                        detail: String::new(),
                    });
                }
                d
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

        #[test]
        fn any_diagram_is_laid_out_without_overlaps(d in arb_diagram()) {
            let l = layout(&d);
            let bad = problems(&d, &l);
            prop_assert!(bad.is_empty(), "{}", bad.join("\n"));
        }
    }
}
