//! The fidelity matrix: every emulator target that can start here, each put through the
//! full capability probe ([`capabilities::probe_full`]), side by side with AWS's
//! documented answers (`microseg doctor --all`; the measured table is in
//! docs/EMULATOR.md, "Fidelity matrix").

use std::time::{Duration, Instant};

use crate::capabilities::{self, BEHAVIOURS, Capabilities};
use crate::ledger::{self, Ledger};
use crate::run_id::RunId;
use crate::target::{self, Target, TargetError, TargetKind, TargetOptions, python};

/// The emulator targets microseg can start, in the matrix's column order.
pub const EMULATOR_TARGETS: [TargetKind; 4] =
    [TargetKind::LocalStackHost, TargetKind::LocalStackContainer, TargetKind::Moto, TargetKind::LocalEmu];

/// Whether an emulator target can start here, without starting it: the Python it needs,
/// or Docker and the image. `Err` says what is missing.
pub fn availability(kind: &TargetKind) -> Result<(), String> {
    let python_for = |spec: &python::VenvSpec<'_>| python::find_python_for(spec).map(|_| ()).map_err(|e| e.to_string());
    match kind {
        TargetKind::LocalStackHost => python_for(&python::LOCALSTACK),
        TargetKind::Moto => python_for(&python::MOTO),
        TargetKind::LocalEmu => python_for(&python::LOCALEMU),
        TargetKind::LocalStackContainer => {
            let image = target::container::configured_image();
            match target::docker_status() {
                Ok(_) if target::container::image_present(&image) => Ok(()),
                Ok(v) => Err(format!("Docker {v} answers but image {image} is not present")),
                Err(e) => Err(e),
            }
        }
        other => Err(format!("{other} is not an emulator microseg starts")),
    }
}

/// The emulator targets that can start here, and why each other one cannot.
pub fn available_emulators() -> (Vec<TargetKind>, Vec<(TargetKind, String)>) {
    let mut yes = Vec::new();
    let mut no = Vec::new();
    for kind in EMULATOR_TARGETS {
        match availability(&kind) {
            Ok(()) => yes.push(kind),
            Err(why) => no.push((kind, why)),
        }
    }
    (yes, no)
}

/// One column of the matrix: a target, started, fully probed and stopped.
#[derive(Debug, Clone)]
pub struct Column {
    /// Which target.
    pub kind: TargetKind,
    /// What served (`moto 5.2.5, host process on …`).
    pub description: String,
    /// Venv install time (zero when cached).
    pub venv_install: Duration,
    /// Start to ready.
    pub start_to_ready: Duration,
    /// How long the full probe took.
    pub probe_time: Duration,
    /// What the probe found: divergences and observations.
    pub capabilities: Capabilities,
}

/// Starts `kind`, runs the full probe on it, and stops it. `opts` gives the start-up
/// timeout and the ledger directory; its kind and probe settings are replaced.
pub async fn measure(kind: &TargetKind, opts: &TargetOptions) -> Result<Column, TargetError> {
    let mut opts = opts.clone();
    opts.kind = kind.clone();
    // The full probe below replaces the start-up one.
    opts.probe = false;
    let t = Target::start(&opts).await?;
    let started = Instant::now();
    let mut caps = t.capabilities.clone();
    let dir = opts.ledger_dir.clone().unwrap_or_else(ledger::runs_dir);
    let probed = match Ledger::create(
        &dir,
        &RunId::generate(),
        capabilities::PROBE_SCENARIO,
        &t.description,
        t.endpoint.clone(),
        &t.region,
    ) {
        Ok(ledger) => capabilities::probe_full(&t.clients(), &mut caps, ledger).await.map_err(TargetError::from),
        Err(e) => Err(e.into()),
    };
    let column = Column {
        kind: kind.clone(),
        description: t.description.clone(),
        venv_install: t.venv_install,
        start_to_ready: t.start_to_ready,
        probe_time: started.elapsed(),
        capabilities: caps,
    };
    t.stop().await;
    probed.map(|()| column)
}

/// The matrix as text: one row per behaviour, a column for AWS's documented answer and
/// one per target; a target's cell carries `≠` where it differs from AWS. Then, per
/// target, the divergences it has.
pub fn render(columns: &[Column]) -> String {
    let mut rows: Vec<Vec<String>> = Vec::new();
    let mut header = vec!["BEHAVIOUR".to_string(), "AWS (documented)".to_string()];
    header.extend(columns.iter().map(|c| c.kind.to_string()));
    rows.push(header);
    for b in BEHAVIOURS {
        let mut row = vec![b.question.to_string(), b.aws.to_string()];
        for c in columns {
            row.push(match c.capabilities.observed.get(b.id) {
                Some(v) if v == b.aws => v.clone(),
                Some(v) => format!("≠ {v}"),
                None => "(not probed)".into(),
            });
        }
        rows.push(row);
    }
    let widths: Vec<usize> =
        (0..rows[0].len()).map(|i| rows.iter().map(|r| r[i].chars().count()).max().unwrap_or(0)).collect();
    let mut out = String::new();
    for row in &rows {
        let cells: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(cell, w)| format!("{cell}{}", " ".repeat(w - cell.chars().count())))
            .collect();
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
    }
    out.push_str("\nwhere each differs from AWS (named divergences; the probed ones confirmed above):\n");
    for c in columns {
        let ids: Vec<&str> = c.capabilities.divergences.iter().map(|d| d.id()).collect();
        out.push_str(&format!("  {}: {}\n", c.kind, if ids.is_empty() { "none".into() } else { ids.join(", ") }));
    }
    out
}

/// The rows that differ from AWS on every target measured: the behaviours no emulator
/// here shows as AWS does (their checks are decided only against AWS or its replay).
pub fn nowhere_as_aws(columns: &[Column]) -> Vec<&'static str> {
    BEHAVIOURS
        .iter()
        .filter(|b| {
            !columns.is_empty() && columns.iter().all(|c| c.capabilities.observed.get(b.id).is_some_and(|v| v != b.aws))
        })
        .map(|b| b.id)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn column(kind: TargetKind, observed: &[(&str, &str)]) -> Column {
        let mut caps = Capabilities::emulator("x".into());
        caps.observed = observed.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        Column {
            kind,
            description: String::new(),
            venv_install: Duration::ZERO,
            start_to_ready: Duration::ZERO,
            probe_time: Duration::ZERO,
            capabilities: caps,
        }
    }

    #[test]
    fn a_cell_that_differs_from_aws_is_marked_and_one_that_matches_is_not() {
        let cols = [
            column(TargetKind::Moto, &[("cloudwatch-cbor", "HTTP 404"), ("rule-number-40000", "accepted")]),
            column(TargetKind::LocalEmu, &[("cloudwatch-cbor", "answers"), ("rule-number-40000", "accepted")]),
        ];
        let text = render(&cols);
        let row =
            |q: &str| text.lines().find(|l| l.starts_with(q)).unwrap_or_else(|| panic!("{q} in {text}")).to_string();
        let line = row("CloudWatch DescribeAlarms");
        let cbor: Vec<&str> = line.split("  ").filter(|s| !s.is_empty()).map(str::trim).collect();
        assert_eq!(cbor[1..], ["answers", "≠ HTTP 404", "answers"]);
        assert!(row("entries of a new custom NACL").contains("(not probed)"));
        assert_eq!(nowhere_as_aws(&cols), ["rule-number-40000"]);
    }

    #[test]
    fn every_behaviour_names_a_divergence_that_exists_or_none() {
        for b in BEHAVIOURS {
            if let Some(d) = b.divergence {
                assert!(capabilities::Divergence::ALL.contains(&d), "{}", b.id);
            }
        }
        let ids: std::collections::BTreeSet<_> = BEHAVIOURS.iter().map(|b| b.id).collect();
        assert_eq!(ids.len(), BEHAVIOURS.len(), "behaviour ids are unique");
    }
}
