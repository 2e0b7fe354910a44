//! Lifecycle: the deployment is there to be checked, and after cleanup nothing is left.

use super::{Check, CheckResult};
use crate::observe::Observed;
use crate::plan::Plan;

/// The deployment's VPC exists: without it no other check can say anything, so this one
/// stands alone in the report. `source` names what was looked for (`--vpc-id vpc-1`,
/// `--tag app=payments`), since there is no VPC id to name.
pub fn check_vpc(plan: &Plan, observed: &Observed, source: &str) -> CheckResult {
    let mut c = Check::new("vpc", "the deployment's VPC exists");
    if observed.vpc.is_none() {
        c.finding("MS-VPC-MISSING", source, format!("a VPC with CIDR {}", plan.vpc.cidr), "no VPC");
    }
    c.done()
}

/// The teardown check: the inventory by run tag after cleanup must be empty.
pub fn check_teardown(leftovers: &[String]) -> CheckResult {
    let mut c = Check::new("teardown", "nothing tagged with the run is left (inventory by tag, not DeleteVpc's word)");
    for l in leftovers {
        c.finding("MS-TEARDOWN-LEFTOVER", l.clone(), "deleted", "still present");
    }
    c.note("inventory by run tag across EC2, IAM, CloudWatch Logs and CloudWatch is empty").done()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checks::fixtures::*;

    #[test]
    fn a_missing_vpc_is_the_one_finding_and_names_what_was_looked_for() {
        let plan = recipe();
        let c = check_vpc(&plan, &Observed::default(), "--tag app=payments");
        assert_eq!(c.status, Status::Fail);
        assert_eq!(c.findings.len(), 1);
        assert_eq!(c.findings[0].id, "MS-VPC-MISSING");
        assert_eq!(c.findings[0].resource, "--tag app=payments");
        assert_eq!(c.findings[0].expected, "a VPC with CIDR 10.0.0.0/16");
        let (o, _) = deployed(&plan);
        assert_eq!(check_vpc(&plan, &o, "--vpc-id vpc-designed").status, Status::Pass);
    }

    #[test]
    fn teardown_passes_only_on_an_empty_inventory() {
        let c = check_teardown(&[]);
        assert_eq!((c.id.as_str(), c.status, c.findings.len()), ("teardown", Status::Pass, 0));
        let left =
            ["vpc vpc-123 (microseg:run-id=ms-test)".to_string(), "IAM role VPCFlowLogsRole-ms-test".to_string()];
        let c = check_teardown(&left);
        assert_eq!(c.status, Status::Fail);
        let got: Vec<(&str, &str)> = c.findings.iter().map(|f| (f.id.as_str(), f.resource.as_str())).collect();
        assert_eq!(got, vec![("MS-TEARDOWN-LEFTOVER", left[0].as_str()), ("MS-TEARDOWN-LEFTOVER", left[1].as_str())]);
    }
}
