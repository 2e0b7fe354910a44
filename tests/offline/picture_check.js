// Judges each report page framed in this document, with the browser's own geometry:
// text and box extents from getBoundingClientRect, arrows mapped to the page by
// getScreenCTM and checked against the browser's box of each path. Writes one JSON
// verdict per page into #verdict.
//
// Rules: no text overlaps another text; a text lies inside its own box and the boxes
// that hold it, and off every other box (it may sit inside the VPC frame, never across
// its border); no arrow runs through a text, a node box, or a zone it neither starts
// nor ends in; no arrowhead lies on a text; boxes do not overlap; and nothing on the
// page reaches past the viewport's width (what sits in a sideways-scrolling box is
// judged by that box).
'use strict';

function judge(frame) {
  const doc = frame.contentDocument;
  const win = frame.contentWindow;
  const problems = [];
  const say = (s) => { if (problems.length < 40) problems.push(s); };
  const vw = doc.documentElement.clientWidth;
  const tol = 0.5;
  if (doc.documentElement.scrollWidth > vw) {
    say(`the page scrolls sideways: ${doc.documentElement.scrollWidth} px wide in a ${vw} px viewport`);
  }
  // Everything on the page within the viewport's width, unless a box that clips it
  // (overflow other than visible) holds it.
  const clipped = (el) => {
    for (let a = el.parentElement; a && a !== doc.body; a = a.parentElement) {
      if (win.getComputedStyle(a).overflowX !== 'visible') return true;
    }
    return false;
  };
  let outside = 0;
  for (const el of doc.body.querySelectorAll('*')) {
    const r = el.getBoundingClientRect();
    if (r.width === 0 && r.height === 0) continue;
    if ((r.right > vw + tol || r.left < -tol) && !clipped(el)) {
      if (outside++ < 5) say(`<${el.tagName.toLowerCase()}> reaches ${r.left.toFixed(1)}..${r.right.toFixed(1)} px, viewport ${vw} px`);
    }
  }
  const svg = doc.querySelector('svg.topology');
  if (!svg) { say('no svg.topology'); return { problems, texts: 0, boxes: 0, arrows: 0, segments: 0, vw }; }

  const rect = (el) => el.getBoundingClientRect();
  // Plain numbers: reading a DOMRect's fields goes through the bindings every time.
  const plain = (r) => ({ left: r.left, right: r.right, top: r.top, bottom: r.bottom });
  const overlaps = (a, b) => a.left < b.right - tol && b.left < a.right - tol && a.top < b.bottom - tol && b.top < a.bottom - tol;
  const contains = (a, b) => b.left >= a.left - tol && b.right <= a.right + tol && b.top >= a.top - tol && b.bottom <= a.bottom + tol;
  const inside = (p, r, grow) => p.x > r.left - grow && p.x < r.right + grow && p.y > r.top - grow && p.y < r.bottom + grow;

  const clusters = new Map();
  for (const g of svg.querySelectorAll('g.cluster')) {
    clusters.set(g.dataset.id, { id: g.dataset.id, parent: g.dataset.parent || null, r: plain(rect(g.querySelector('rect.box'))), frame: false });
  }
  for (const c of clusters.values()) if (c.parent && clusters.has(c.parent)) clusters.get(c.parent).frame = true;
  const within = (inner, outer) => {
    for (let c = inner; c; c = clusters.get(c) ? clusters.get(c).parent : null) if (c === outer) return true;
    return false;
  };
  const nodes = new Map();
  for (const g of svg.querySelectorAll('g.node')) {
    nodes.set(g.dataset.id, { id: g.dataset.id, cluster: g.dataset.cluster || null, r: plain(rect(g.querySelector('rect.box'))) });
  }
  const texts = [];
  for (const t of svg.querySelectorAll('text')) {
    const g = t.closest('g');
    const kind = g ? g.getAttribute('class') : 'none';
    const owner = kind === 'node' || kind === 'cluster' ? g.dataset.id : kind === 'edge' ? 'edge ' + g.dataset.from + '→' + g.dataset.to : 'none';
    const holder = kind === 'node' ? g.dataset.cluster || null : kind === 'cluster' ? g.dataset.id : null;
    texts.push({ s: t.textContent, kind, owner, holder, r: plain(rect(t)) });
  }
  // Text against text, boxes and the viewport.
  for (let i = 0; i < texts.length; i++) {
    const a = texts[i];
    if (a.r.right > vw + tol || a.r.left < -tol) say(`text "${a.s}" of ${a.owner} lies outside the viewport`);
    for (let j = i + 1; j < texts.length; j++) {
      if (overlaps(a.r, texts[j].r)) say(`text "${a.s}" of ${a.owner} overlaps "${texts[j].s}" of ${texts[j].owner}`);
    }
    for (const n of nodes.values()) {
      if (a.kind === 'node' && a.owner === n.id) {
        if (!contains(n.r, a.r)) say(`text "${a.s}" spills out of node ${n.id}`);
      } else if (overlaps(n.r, a.r)) say(`text "${a.s}" of ${a.owner} lies on node ${n.id}`);
    }
    for (const c of clusters.values()) {
      if (a.holder && within(a.holder, c.id)) {
        if (!contains(c.r, a.r)) say(`text "${a.s}" spills out of ${c.id}`);
      } else if (c.frame) {
        if (overlaps(c.r, a.r) && !contains(c.r, a.r)) say(`text "${a.s}" of ${a.owner} crosses the border of ${c.id}`);
      } else if (overlaps(c.r, a.r)) say(`text "${a.s}" of ${a.owner} lies on zone ${c.id}`);
    }
  }
  // Arrows: each straight stretch of a path (its corners read from the path data and
  // mapped to the page by the browser's own transform, then checked against the
  // browser's box of the path) against every text and box near it.
  let segments = 0;
  const edges = svg.querySelectorAll('g.edge');
  // Whether the segment p–q passes through the inside of r grown by `grow` (Liang–Barsky).
  const crosses = (p, q, r, grow) => {
    const x0 = r.left - grow, x1 = r.right + grow, y0 = r.top - grow, y1 = r.bottom + grow;
    const dx = q.x - p.x, dy = q.y - p.y;
    let t0 = 0, t1 = 1;
    for (const [pk, qk] of [[-dx, p.x - x0], [dx, x1 - p.x], [-dy, p.y - y0], [dy, y1 - p.y]]) {
      if (pk === 0) { if (qk <= 0) return false; } else {
        const t = qk / pk;
        if (pk < 0) t0 = Math.max(t0, t); else t1 = Math.min(t1, t);
      }
    }
    return t1 - t0 > 1e-9;
  };
  for (const g of edges) {
    const name = g.dataset.from + '→' + g.dataset.to;
    const path = g.querySelector('path.arrow');
    const m = path.getScreenCTM();
    const half = parseFloat(path.getAttribute('stroke-width') || '1') / 2 * (m ? m.a : 1);
    const d = path.getAttribute('d');
    if (!/^M[-0-9. ]+( L[-0-9. ]+)*$/.test(d)) { say(`arrow ${name}: path data not a polyline: ${d}`); continue; }
    const points = d.slice(1).split(' L').map((xy) => {
      const [x, y] = xy.trim().split(' ').map(Number);
      return new DOMPoint(x, y).matrixTransform(m);
    });
    const box = plain(rect(path));
    const xs = points.map((p) => p.x), ys = points.map((p) => p.y);
    const spanned = { left: Math.min(...xs), right: Math.max(...xs), top: Math.min(...ys), bottom: Math.max(...ys) };
    if (['left', 'right', 'top', 'bottom'].some((k) => Math.abs(spanned[k] - box[k]) > 0.5)) {
      say(`arrow ${name}: its corners span ${JSON.stringify(spanned)}, the browser's box is ${JSON.stringify(box)}`);
    }
    const near = (r) => r.left < box.right + half && box.left - half < r.right && r.top < box.bottom + half && box.top - half < r.bottom;
    const ends = [g.dataset.from, g.dataset.to];
    const endsIn = (c) => ends.some((e) => (nodes.has(e) ? within(nodes.get(e).cluster, c) : within(e, c)));
    const nearTexts = texts.filter((t) => near(t.r));
    const nearNodes = [...nodes.values()].filter((n) => near(n.r));
    const nearZones = [...clusters.values()].filter((c) => !c.frame && !endsIn(c.id) && near(c.r));
    for (let i = 0; i + 1 < points.length; i++) {
      const [p, q] = [points[i], points[i + 1]];
      segments++;
      for (const t of nearTexts) if (crosses(p, q, t.r, half)) say(`arrow ${name} runs through text "${t.s}" of ${t.owner}`);
      for (const n of nearNodes) if (crosses(p, q, n.r, -1)) say(`arrow ${name} runs through node ${n.id}`);
      for (const c of nearZones) if (crosses(p, q, c.r, -1)) say(`arrow ${name} runs through zone ${c.id}`);
    }
    const head = g.querySelector('path.arrowhead');
    if (head) for (const t of texts) if (overlaps(plain(rect(head)), t.r)) say(`arrowhead of ${name} lies on text "${t.s}" of ${t.owner}`);
  }
  // Boxes against boxes.
  const ns = [...nodes.values()];
  for (let i = 0; i < ns.length; i++) {
    for (let j = i + 1; j < ns.length; j++) if (overlaps(ns[i].r, ns[j].r)) say(`nodes ${ns[i].id} and ${ns[j].id} overlap`);
    if (ns[i].cluster && !contains(clusters.get(ns[i].cluster).r, ns[i].r)) say(`node ${ns[i].id} spills out of ${ns[i].cluster}`);
  }
  const cs = [...clusters.values()];
  for (let i = 0; i < cs.length; i++) {
    for (let j = i + 1; j < cs.length; j++) {
      if (cs[i].parent === cs[j].parent && overlaps(cs[i].r, cs[j].r)) say(`clusters ${cs[i].id} and ${cs[j].id} overlap`);
    }
  }
  const s = rect(svg);
  return { problems, texts: texts.length, boxes: nodes.size + clusters.size, arrows: edges.length, segments, vw, svg: [s.left, s.right] };
}

window.addEventListener('load', () => {
  const out = {};
  for (const frame of document.querySelectorAll('iframe')) {
    try {
      out[frame.dataset.name] = judge(frame);
    } catch (e) {
      out[frame.dataset.name] = { problems: ['the check failed: ' + e], texts: 0, boxes: 0, arrows: 0, segments: 0 };
    }
  }
  document.getElementById('verdict').textContent = JSON.stringify(out);
});
