//! The example team's own network code: a two-zone design (an app zone that reaches a
//! database zone on 5432, nothing else) built with the AWS SDK directly, the way a team's
//! own implementation would be, whether in Rust, Terraform or CloudFormation. microseg
//! did not build it; the tests gate it against `specs/two-zone.toml`.

use aws_config::SdkConfig;
use aws_sdk_ec2::Client;
use aws_sdk_ec2::error::SdkError;
use aws_sdk_ec2::types::{
    Filter, IpPermission, IpRange, ResourceType, RuleAction, Tag, TagSpecification, UserIdGroupPair,
};

/// A mistake made on purpose, so that the gate has something to find.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flaw {
    /// Built as designed.
    None,
    /// The database group admits 5432 from the app subnet's CIDR instead of from the
    /// app's security group: any instance in that subnet gets in, not only the app.
    DbOpenToAppCidr,
}

/// What [`deploy`] built, for [`Network::remove`].
#[derive(Debug)]
pub struct Network {
    client: Client,
    /// The value of the `app` tag on the VPC: how a gate finds this deployment.
    pub tag: String,
    /// The VPC.
    pub vpc_id: String,
    subnets: Vec<String>,
    nacls: Vec<String>,
    groups: Vec<String>,
}

/// Any failed EC2 call, by its message.
pub type Error = Box<dyn std::error::Error + Send + Sync>;

fn tags(kind: ResourceType, name: &str, app: &str) -> TagSpecification {
    TagSpecification::builder()
        .resource_type(kind)
        .tags(Tag::builder().key("Name").value(name).build())
        .tags(Tag::builder().key("app").value(app).build())
        .build()
}

fn tcp(ports: (i32, i32)) -> aws_sdk_ec2::types::builders::IpPermissionBuilder {
    IpPermission::builder().ip_protocol("tcp").from_port(ports.0).to_port(ports.1)
}

fn ec2<E: std::error::Error + Send + Sync + 'static, R: std::fmt::Debug + Send + Sync + 'static>(
    what: &'static str,
) -> impl FnOnce(SdkError<E, R>) -> Error {
    move |e| format!("{what}: {}", aws_sdk_ec2::error::DisplayErrorContext(e)).into()
}

/// Builds the two-zone design, tagged `app=<tag>`.
pub async fn deploy(config: &SdkConfig, tag: &str, flaw: Flaw) -> Result<Network, Error> {
    let client = Client::new(config);
    let region = config.region().map(|r| r.to_string()).unwrap_or_else(|| "us-east-1".into());
    let vpc = client
        .create_vpc()
        .cidr_block("10.30.0.0/16")
        .tag_specifications(tags(ResourceType::Vpc, "two-zone-vpc", tag))
        .send()
        .await
        .map_err(ec2("CreateVpc"))?;
    let vpc_id = vpc.vpc().and_then(|v| v.vpc_id()).unwrap_or_default().to_string();
    let mut net = Network {
        client: client.clone(),
        tag: tag.into(),
        vpc_id: vpc_id.clone(),
        subnets: vec![],
        nacls: vec![],
        groups: vec![],
    };

    // Subnets, each with a NACL of its own: replies on ephemeral ports in both directions.
    let zones = [
        ("app", "10.30.1.0/24", "a", (5432, 5432), "10.30.2.0/24", true),
        ("db", "10.30.2.0/24", "b", (5432, 5432), "10.30.1.0/24", false),
    ];
    for (name, cidr, az, port, peer, calls_out) in zones {
        let subnet = client
            .create_subnet()
            .vpc_id(&vpc_id)
            .cidr_block(cidr)
            .availability_zone(format!("{region}{az}"))
            .tag_specifications(tags(ResourceType::Subnet, &format!("two-zone-{name}"), tag))
            .send()
            .await
            .map_err(ec2("CreateSubnet"))?;
        let subnet_id = subnet.subnet().and_then(|s| s.subnet_id()).unwrap_or_default().to_string();
        net.subnets.push(subnet_id.clone());
        let nacl = client
            .create_network_acl()
            .vpc_id(&vpc_id)
            .tag_specifications(tags(ResourceType::NetworkAcl, &format!("two-zone-{name}-nacl"), tag))
            .send()
            .await
            .map_err(ec2("CreateNetworkAcl"))?;
        let nacl_id = nacl.network_acl().and_then(|n| n.network_acl_id()).unwrap_or_default().to_string();
        net.nacls.push(nacl_id.clone());
        // The app calls out on 5432 and takes replies in; the database the other way round.
        let (service_egress, ephemeral) = ((port.0, port.1), (1024, 65535));
        let (egress_ports, ingress_ports) =
            if calls_out { (service_egress, ephemeral) } else { (ephemeral, service_egress) };
        for (egress, ports) in [(true, egress_ports), (false, ingress_ports)] {
            client
                .create_network_acl_entry()
                .network_acl_id(&nacl_id)
                .rule_number(100)
                .egress(egress)
                .protocol("6")
                .port_range(aws_sdk_ec2::types::PortRange::builder().from(ports.0).to(ports.1).build())
                .cidr_block(peer)
                .rule_action(RuleAction::Allow)
                .send()
                .await
                .map_err(ec2("CreateNetworkAclEntry"))?;
        }
        // A new subnet starts on the VPC's default NACL: move that association.
        let current = client
            .describe_network_acls()
            .filters(Filter::builder().name("association.subnet-id").values(&subnet_id).build())
            .send()
            .await
            .map_err(ec2("DescribeNetworkAcls"))?;
        let association = current
            .network_acls()
            .iter()
            .flat_map(|n| n.associations())
            .find(|a| a.subnet_id() == Some(subnet_id.as_str()))
            .and_then(|a| a.network_acl_association_id())
            .ok_or_else(|| format!("subnet {subnet_id} has no NACL association"))?;
        client
            .replace_network_acl_association()
            .association_id(association)
            .network_acl_id(&nacl_id)
            .send()
            .await
            .map_err(ec2("ReplaceNetworkAclAssociation"))?;
    }

    // Groups: each loses the default allow-all egress, then gets exactly its rule.
    let mut group_ids = Vec::new();
    for (name, description) in [("app", "5432 to the database group"), ("db", "5432 from the app group only")] {
        let group = client
            .create_security_group()
            .vpc_id(&vpc_id)
            .group_name(format!("two-zone-{name}"))
            .description(description)
            .tag_specifications(tags(ResourceType::SecurityGroup, &format!("two-zone-{name}"), tag))
            .send()
            .await
            .map_err(ec2("CreateSecurityGroup"))?;
        let id = group.group_id().unwrap_or_default().to_string();
        client
            .revoke_security_group_egress()
            .group_id(&id)
            .ip_permissions(
                IpPermission::builder()
                    .ip_protocol("-1")
                    .ip_ranges(IpRange::builder().cidr_ip("0.0.0.0/0").build())
                    .build(),
            )
            .send()
            .await
            .map_err(ec2("RevokeSecurityGroupEgress"))?;
        net.groups.push(id.clone());
        group_ids.push(id);
    }
    let (app, db) = (&group_ids[0], &group_ids[1]);
    client
        .authorize_security_group_egress()
        .group_id(app)
        .ip_permissions(tcp((5432, 5432)).user_id_group_pairs(UserIdGroupPair::builder().group_id(db).build()).build())
        .send()
        .await
        .map_err(ec2("AuthorizeSecurityGroupEgress"))?;
    let from_app = match flaw {
        Flaw::None => tcp((5432, 5432)).user_id_group_pairs(UserIdGroupPair::builder().group_id(app).build()),
        Flaw::DbOpenToAppCidr => tcp((5432, 5432)).ip_ranges(IpRange::builder().cidr_ip("10.30.1.0/24").build()),
    };
    client
        .authorize_security_group_ingress()
        .group_id(db)
        .ip_permissions(from_app.build())
        .send()
        .await
        .map_err(ec2("AuthorizeSecurityGroupIngress"))?;
    Ok(net)
}

impl Network {
    /// Deletes everything [`deploy`] made, dependents first: the groups' references to
    /// each other, the groups, the subnets back on the default NACL, the NACLs, the
    /// subnets, the VPC.
    pub async fn remove(self) -> Result<(), Error> {
        let c = &self.client;
        for group in &self.groups {
            let described =
                c.describe_security_groups().group_ids(group).send().await.map_err(ec2("DescribeSecurityGroups"))?;
            for g in described.security_groups() {
                if !g.ip_permissions().is_empty() {
                    c.revoke_security_group_ingress()
                        .group_id(group)
                        .set_ip_permissions(Some(g.ip_permissions().to_vec()))
                        .send()
                        .await
                        .map_err(ec2("RevokeSecurityGroupIngress"))?;
                }
                if !g.ip_permissions_egress().is_empty() {
                    c.revoke_security_group_egress()
                        .group_id(group)
                        .set_ip_permissions(Some(g.ip_permissions_egress().to_vec()))
                        .send()
                        .await
                        .map_err(ec2("RevokeSecurityGroupEgress"))?;
                }
            }
        }
        for group in &self.groups {
            c.delete_security_group().group_id(group).send().await.map_err(ec2("DeleteSecurityGroup"))?;
        }
        let default_nacl = c
            .describe_network_acls()
            .filters(Filter::builder().name("vpc-id").values(&self.vpc_id).build())
            .filters(Filter::builder().name("default").values("true").build())
            .send()
            .await
            .map_err(ec2("DescribeNetworkAcls"))?
            .network_acls()
            .first()
            .and_then(|n| n.network_acl_id())
            .map(str::to_string)
            .ok_or("the VPC has no default NACL")?;
        let ours = c
            .describe_network_acls()
            .set_network_acl_ids(Some(self.nacls.clone()))
            .send()
            .await
            .map_err(ec2("DescribeNetworkAcls"))?;
        for association in ours.network_acls().iter().flat_map(|n| n.associations()) {
            if let Some(id) = association.network_acl_association_id() {
                c.replace_network_acl_association()
                    .association_id(id)
                    .network_acl_id(&default_nacl)
                    .send()
                    .await
                    .map_err(ec2("ReplaceNetworkAclAssociation"))?;
            }
        }
        for nacl in &self.nacls {
            c.delete_network_acl().network_acl_id(nacl).send().await.map_err(ec2("DeleteNetworkAcl"))?;
        }
        for subnet in &self.subnets {
            c.delete_subnet().subnet_id(subnet).send().await.map_err(ec2("DeleteSubnet"))?;
        }
        c.delete_vpc().vpc_id(&self.vpc_id).send().await.map_err(ec2("DeleteVpc"))?;
        Ok(())
    }
}
