//! `validate --expect-gone` accounts for every kind of resource that build creates. For
//! each scenario: build and keep, delete everything but one resource of each kind, and
//! the gate must list exactly those, by tag; by VPC, those in the VPC plus AWS's own
//! defaults. The expected lists come from the run's ledger (what build recorded
//! creating), not from the inventory under test.

use std::collections::BTreeSet;

use aws_sdk_ec2::types::Filter;
use microseg_cli::exit;
use microseg_harness::aws::Clients;
use microseg_harness::inventory::Item;
use microseg_harness::ledger::{self, LedgerEntry, ResourceKind};
use microseg_harness::plan::Plan;
use microseg_harness::run::{self, RunOptions, RunTarget};
use microseg_harness::spec;
use microseg_harness::teardown::{self, Backoff};
use rstest::rstest;

use crate::support::{Group, SweepOnDrop, ledger_dir, microseg_on, on, text};

/// What `validate --expect-gone` printed as remaining: (kind, id) per line.
fn listed(out: &std::process::Output) -> BTreeSet<(String, String)> {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.strip_prefix("  "))
        .filter_map(|l| {
            let mut w = l.split_whitespace();
            Some((w.next()?.to_string(), w.next()?.to_string()))
        })
        .collect()
}

fn key(kind: ResourceKind, id: &str) -> (String, String) {
    (kind.name().to_string(), id.to_string())
}

/// The one resource of each kind to leave. Where one kind holds another (a NAT gateway
/// its address and subnet, a metric filter its log group) the holder's choice decides.
async fn choose_kept(clients: &Clients, created: &[LedgerEntry]) -> Vec<LedgerEntry> {
    let first = |kind: ResourceKind| created.iter().find(|e| e.kind == kind).cloned();
    let mut kept: Vec<LedgerEntry> = Vec::new();
    let nat = first(ResourceKind::NatGateway);
    let (mut subnet, mut address) = (first(ResourceKind::Subnet), first(ResourceKind::ElasticIp));
    if let Some(nat) = &nat {
        let d = clients.ec2.describe_nat_gateways().nat_gateway_ids(&nat.id).send().await.unwrap();
        let g = &d.nat_gateways()[0];
        let (in_subnet, holds) = (g.subnet_id().unwrap(), g.nat_gateway_addresses()[0].allocation_id().unwrap());
        subnet = created.iter().find(|e| e.id == in_subnet).cloned();
        address = created.iter().find(|e| e.id == holds).cloned();
        kept.push(nat.clone());
    }
    kept.extend(subnet);
    kept.extend(address);
    for kind in [
        ResourceKind::Vpc,
        ResourceKind::NetworkAcl,
        ResourceKind::SecurityGroup,
        ResourceKind::RouteTable,
        ResourceKind::InternetGateway,
        ResourceKind::FlowLog,
        ResourceKind::Role,
        ResourceKind::LogGroup,
        ResourceKind::MetricFilter,
        ResourceKind::Alarm,
    ] {
        kept.extend(first(kind));
    }
    kept
}

/// A kept group must not refer to a group that goes: AWS refuses to delete a group that
/// another one's rules name.
async fn unlink_group(clients: &Clients, id: &str) {
    let d = clients.ec2.describe_security_groups().group_ids(id).send().await.unwrap();
    let g = &d.security_groups()[0];
    let refs = |p: &[aws_sdk_ec2::types::IpPermission]| -> Vec<_> {
        p.iter().filter(|p| !p.user_id_group_pairs().is_empty()).cloned().collect()
    };
    let (ingress, egress) = (refs(g.ip_permissions()), refs(g.ip_permissions_egress()));
    if !ingress.is_empty() {
        clients
            .ec2
            .revoke_security_group_ingress()
            .group_id(id)
            .set_ip_permissions(Some(ingress))
            .send()
            .await
            .unwrap();
    }
    if !egress.is_empty() {
        clients.ec2.revoke_security_group_egress().group_id(id).set_ip_permissions(Some(egress)).send().await.unwrap();
    }
}

/// AWS's own resources in a VPC, made with it and gone with it.
async fn defaults_of(clients: &Clients, vpc: &str) -> BTreeSet<(String, String)> {
    let in_vpc = Filter::builder().name("vpc-id").values(vpc).build();
    let ec2 = &clients.ec2;
    let nacls = ec2
        .describe_network_acls()
        .filters(in_vpc.clone())
        .filters(Filter::builder().name("default").values("true").build())
        .send()
        .await
        .unwrap();
    let groups = ec2
        .describe_security_groups()
        .filters(in_vpc.clone())
        .filters(Filter::builder().name("group-name").values("default").build())
        .send()
        .await
        .unwrap();
    let main = ec2
        .describe_route_tables()
        .filters(in_vpc)
        .filters(Filter::builder().name("association.main").values("true").build())
        .send()
        .await
        .unwrap();
    let mut out = BTreeSet::new();
    out.extend(nacls.network_acls().iter().map(|n| key(ResourceKind::DefaultNetworkAcl, n.network_acl_id().unwrap())));
    out.extend(groups.security_groups().iter().map(|g| key(ResourceKind::SecurityGroup, g.group_id().unwrap())));
    out.extend(main.route_tables().iter().map(|r| key(ResourceKind::RouteTable, r.route_table_id().unwrap())));
    out
}

#[rstest]
#[case::recipe("recipe")]
#[case::recipe_hardened("recipe-hardened")]
#[case::three_tier("three-tier")]
#[case::three_tier_hardened("three-tier-hardened")]
#[case::microservices("microservices")]
#[case::microservices_hardened("microservices-hardened")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expect_gone_lists_exactly_one_leftover_of_each_kind(#[case] scenario: &str) {
    let _t = crate::support::timer();
    let (s, source) = spec::load(scenario).unwrap();
    let plan = Plan::from_spec(&s, &source).unwrap();
    let (clients, caps, desc) = on(Group::Nat).await;
    let dir = ledger_dir();
    let opts =
        RunOptions { keep: true, ledger_dir: Some(dir.path().into()), no_signal_handler: true, ..Default::default() };
    let report = run::run(&plan, &RunTarget::new(clients.clone(), &desc, caps), &opts).await.unwrap();
    let _sweep = SweepOnDrop::new(&clients, &report.run_id);
    assert!(report.kept && report.interruption.is_none(), "{scenario}: {:?}", report.interruption);
    let created = ledger::read(std::path::Path::new(&report.ledger)).unwrap().resources;

    let kept = choose_kept(&clients, &created).await;
    let kinds: BTreeSet<ResourceKind> = created.iter().map(|e| e.kind).collect();
    assert_eq!(kept.iter().map(|e| e.kind).collect::<BTreeSet<_>>(), kinds, "{scenario}: one of every kind built");
    let group = kept.iter().find(|e| e.kind == ResourceKind::SecurityGroup).unwrap();
    unlink_group(&clients, &group.id).await;
    let going: Vec<Item> = created
        .iter()
        .filter(|e| !kept.contains(e))
        .map(|e| Item {
            kind: e.kind,
            id: e.id.clone(),
            run_id: Some(report.run_id.clone()),
            created_at: None,
            vpc_id: None,
            parent: e.parent.clone(),
            tags: Default::default(),
        })
        .collect();
    let removed = teardown::teardown(&clients, &going, Backoff::default()).await;
    assert_eq!(removed.failures().count(), 0, "{scenario}: {:?}", removed.failures().collect::<Vec<_>>());

    // By tag: exactly the kept resources, every kind named.
    let tag = format!("microseg:run-id={}", report.run_id);
    let by_tag = microseg_on(Group::Nat, &["validate", "--quiet", "--expect-gone", "--tag", &tag]);
    assert_eq!(by_tag.status.code(), Some(exit::FINDINGS), "{}", text(&by_tag));
    let expected: BTreeSet<_> = kept.iter().map(|e| key(e.kind, &e.id)).collect();
    assert_eq!(listed(&by_tag), expected, "{scenario}: {}", text(&by_tag));
    assert!(text(&by_tag).contains(&format!("{} resource(s) remain", expected.len())), "{}", text(&by_tag));

    // By VPC: what is in the VPC or attached to it (no account-wide kind names a VPC),
    // and AWS's defaults, which go with the VPC.
    let vpc = &kept.iter().find(|e| e.kind == ResourceKind::Vpc).unwrap().id;
    let by_vpc = microseg_on(Group::Nat, &["validate", "--quiet", "--expect-gone", "--vpc-id", vpc]);
    assert_eq!(by_vpc.status.code(), Some(exit::FINDINGS), "{}", text(&by_vpc));
    let account_wide = [ResourceKind::Role, ResourceKind::LogGroup, ResourceKind::MetricFilter, ResourceKind::Alarm];
    let mut in_vpc: BTreeSet<_> =
        kept.iter().filter(|e| !account_wide.contains(&e.kind)).map(|e| key(e.kind, &e.id)).collect();
    in_vpc.extend(defaults_of(&clients, vpc).await);
    assert_eq!(listed(&by_vpc), in_vpc, "{scenario}: {}", text(&by_vpc));
}
