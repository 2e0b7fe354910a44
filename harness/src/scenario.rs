//! Scenarios for the public API: a built-in one by name and variant, or a spec of the
//! caller's own from a file or a string. Loading and validating happen when the scenario
//! is used, and a bad spec is an error naming file, line, field and value before any
//! API call.

use std::path::PathBuf;

use crate::Error;
use crate::plan::Plan;
use crate::spec::{self, SpecSource};

/// A scenario to deploy, check or gate against.
///
/// ```
/// use microseg_harness::Scenario;
///
/// // Built-in: recipe, three-tier, microservices; as written or hardened.
/// let recipe = Scenario::builtin("recipe").hardened();
/// assert_eq!(recipe.plan().unwrap().scenario, "recipe-hardened");
///
/// // A design of your own, checked before anything is built.
/// let bad = Scenario::from_toml("mine.toml", "[scenario]\nname = \"mine\"\n");
/// assert!(bad.plan().unwrap_err().to_string().contains("mine.toml"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scenario {
    source: Source,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Source {
    Builtin { name: String, hardened: bool },
    File(PathBuf),
    Text { path: PathBuf, text: String },
}

impl Scenario {
    /// A built-in scenario, as written: `recipe`, `three-tier` or `microservices`
    /// (`scenarios/*.toml`).
    pub fn builtin(name: &str) -> Scenario {
        Scenario { source: Source::Builtin { name: name.to_string(), hardened: false } }
    }

    /// The hardened variant of a built-in scenario: its rules corrected so that exactly
    /// the intended flows pass. (A spec of your own has no variants; it stays as it is.)
    pub fn hardened(self) -> Scenario {
        self.variant(true)
    }

    /// The variant by name, as `--variant` takes it: `as-written` or `hardened`
    /// (anything else is as written).
    pub fn with_variant(self, variant: &str) -> Scenario {
        self.variant(variant == "hardened")
    }

    fn variant(self, hardened: bool) -> Scenario {
        match self.source {
            Source::Builtin { name, .. } => Scenario { source: Source::Builtin { name, hardened } },
            other => Scenario { source: other },
        }
    }

    /// A spec file of your own (docs/SPEC.md describes every table and key).
    pub fn from_file(path: impl Into<PathBuf>) -> Scenario {
        Scenario { source: Source::File(path.into()) }
    }

    /// A spec given as text; `path` names it in error messages.
    pub fn from_toml(path: impl Into<PathBuf>, text: impl Into<String>) -> Scenario {
        Scenario { source: Source::Text { path: path.into(), text: text.into() } }
    }

    /// Loads and validates the spec: the plan every deploy, check and gate works from.
    pub fn plan(&self) -> Result<Plan, Error> {
        let (spec, source) = match &self.source {
            Source::Builtin { name, hardened: true } => spec::load(&format!("{name}-hardened"))?,
            Source::Builtin { name, hardened: false } => spec::load(name)?,
            Source::File(path) => spec::load_file(path)?,
            Source::Text { path, text } => spec::parse(SpecSource { path: path.clone(), text: text.clone() })?,
        };
        Ok(Plan::from_spec(&spec, &source)?)
    }
}
