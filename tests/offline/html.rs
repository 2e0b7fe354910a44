//! The HTML report rendered by headless Chromium (Debian's `chromium`), where installed:
//! the page must draw, and the zone matrix must show its verdict colours. Without a
//! Chromium the test says why and skips, except under `CI=true`, where it fails.

use std::path::{Path, PathBuf};
use std::process::Command;

use microseg_harness::plan::Plan;
use microseg_harness::{reach, spec, topology};

/// The Chromium on PATH, if any.
pub fn chromium() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    ["chromium", "chromium-browser", "google-chrome"]
        .iter()
        .flat_map(|name| std::env::split_paths(&path).map(move |dir| dir.join(name)))
        .find(|p| p.is_file())
}

/// Pixels of exactly this colour in an RGB(A) PNG.
fn count(png_file: &Path, rgb: [u8; 3]) -> (usize, usize) {
    let decoder = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(png_file).unwrap()));
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut buf).unwrap();
    let step = info.color_type.samples();
    let pixels = &buf[..info.buffer_size()];
    let hits = pixels.chunks(step).filter(|p| p[..3] == rgb).count();
    (hits, pixels.len() / step)
}

/// Renders the scenario's design as the HTML report and screenshots it.
fn render(browser: &Path, dir: &Path, scenario: &str) -> PathBuf {
    let (s, src) = spec::load(scenario).unwrap();
    let plan = Plan::from_spec(&s, &src).unwrap();
    let (observed, bindings) = reach::designed(&plan);
    let r = reach::analyse(&plan, &observed, &bindings);
    let t = topology::topology(&plan, &observed, &bindings);
    let page = topology::html(&format!("microseg · {scenario} as designed"), &t, Some(&r), &[]);
    let (html, shot) = (dir.join(format!("{scenario}.html")), dir.join(format!("{scenario}.png")));
    std::fs::write(&html, page).unwrap();
    let out = Command::new(browser)
        .args(["--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--window-size=1320,2400"])
        .arg(format!("--user-data-dir={}", dir.join(format!("profile-{scenario}")).display()))
        .arg(format!("--screenshot={}", shot.display()))
        .arg(format!("file://{}", html.display()))
        .output()
        .unwrap();
    assert!(shot.is_file(), "no screenshot: {}", String::from_utf8_lossy(&out.stderr));
    shot
}

const AS_INTENDED: [u8; 3] = [0xa5, 0xd6, 0xa7];
const OPEN: [u8; 3] = [0xef, 0x9a, 0x9a];
const BLOCKED: [u8; 3] = [0xff, 0xcc, 0x80];

#[test]
fn the_html_report_renders_in_headless_chromium_with_its_matrix_colours() {
    let Some(browser) = chromium() else {
        let why = "no chromium on PATH (Debian: apt-get install chromium); the page cannot be rendered here";
        crate::skip::skip("the_html_report_renders_in_headless_chromium_with_its_matrix_colours", why);
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let written = render(&browser, dir.path(), "recipe");
    let hardened = render(&browser, dir.path(), "recipe-hardened");

    // Not blank: much of the page is not white.
    let (white, total) = count(&written, [255, 255, 255]);
    assert!(white * 10 < total * 9, "the page is {white} of {total} pixels white");
    // The colours follow the verdicts. As written: 11 blocked cells, 1 open, 2 as
    // intended; hardened: 15 as intended, none blocked or open, so there its blocked and
    // open colours are the legend's chips alone. A matrix cell is at least 40 × 20 px.
    let px = |shot: &Path, rgb| count(shot, rgb).0;
    let cell = 40 * 20;
    let extra = |a: usize, b: usize| a.saturating_sub(b);
    assert!(extra(px(&written, BLOCKED), px(&hardened, BLOCKED)) > 11 * cell, "blocked cells missing");
    assert!(extra(px(&written, OPEN), px(&hardened, OPEN)) > cell, "the open cell is missing");
    assert!(extra(px(&hardened, AS_INTENDED), px(&written, AS_INTENDED)) > 13 * cell, "hardened's cells missing");
    eprintln!("rendered {} ({} bytes, {total} pixels)", written.display(), std::fs::metadata(&written).unwrap().len());
}
