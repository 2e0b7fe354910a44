//! AWS clients from one `SdkConfig`, and one place that classifies AWS errors.
//!
//! Errors are matched by their code (`ProvideErrorMetadata::code()`), never by the
//! `Unhandled` variant: EC2 reports most failures as codes only, and a new SDK release
//! may turn an unhandled code into a modeled variant (smithy-rs RFC 0039).

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, Mutex};

use aws_config::SdkConfig;
use aws_sdk_ec2::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::interceptors::Intercept;
use aws_smithy_runtime_api::client::interceptors::context::BeforeTransmitInterceptorContextRef;
use aws_smithy_runtime_api::client::orchestrator::Metadata;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::config_bag::ConfigBag;

/// Error codes the harness acts on.
pub mod codes {
    /// A dependent still exists; retry after it is gone.
    pub const DEPENDENCY_VIOLATION: &str = "DependencyViolation";
    /// IAM: the entity does not exist.
    pub const NO_SUCH_ENTITY: &str = "NoSuchEntity";
    /// CloudWatch Logs: the resource does not exist.
    pub const RESOURCE_NOT_FOUND: &str = "ResourceNotFoundException";
    /// IAM: the role still has policies.
    pub const DELETE_CONFLICT: &str = "DeleteConflict";
    /// EC2: the Elastic IP is still in use (by a NAT gateway being deleted, say).
    pub const ADDRESS_IN_USE: &str = "InvalidIPAddress.InUse";
    /// EC2: the entry's rule number is taken.
    pub const NACL_ENTRY_EXISTS: &str = "NetworkAclEntryAlreadyExists";
    /// EC2: the gateway is not attached to that VPC.
    pub const GATEWAY_NOT_ATTACHED: &str = "Gateway.NotAttached";
    /// EC2: the permission is not there (revoke).
    pub const PERMISSION_NOT_FOUND: &str = "InvalidPermission.NotFound";
}

/// The clients microseg uses, all from one `SdkConfig` (one connection pool, one
/// credential chain, one endpoint).
#[derive(Debug, Clone)]
pub struct Clients {
    /// EC2.
    pub ec2: aws_sdk_ec2::Client,
    /// IAM.
    pub iam: aws_sdk_iam::Client,
    /// CloudWatch Logs.
    pub logs: aws_sdk_cloudwatchlogs::Client,
    /// CloudWatch.
    pub cloudwatch: aws_sdk_cloudwatch::Client,
    /// STS.
    pub sts: aws_sdk_sts::Client,
    /// Service Quotas (`doctor`'s preflight only).
    pub quotas: aws_sdk_servicequotas::Client,
    /// Region the clients use.
    pub region: String,
    /// Every request these clients send, counted as it goes over the wire.
    pub calls: CallCounter,
    /// Whether CloudWatch answers the SDK's protocol here. `false` on a target with the
    /// `cloudwatch-no-cbor` divergence: the build creates no alarm, and observing,
    /// listing and sweeping skip alarms rather than fail on every call.
    pub cloudwatch_served: bool,
}

impl Clients {
    /// Derives every client from one config, each with the same call counter.
    pub fn new(config: &SdkConfig) -> Clients {
        let calls = CallCounter::default();
        Clients {
            ec2: aws_sdk_ec2::Client::from_conf(
                aws_sdk_ec2::config::Builder::from(config).interceptor(calls.clone()).build(),
            ),
            iam: aws_sdk_iam::Client::from_conf(
                aws_sdk_iam::config::Builder::from(config).interceptor(calls.clone()).build(),
            ),
            logs: aws_sdk_cloudwatchlogs::Client::from_conf(
                aws_sdk_cloudwatchlogs::config::Builder::from(config).interceptor(calls.clone()).build(),
            ),
            cloudwatch: aws_sdk_cloudwatch::Client::from_conf(
                aws_sdk_cloudwatch::config::Builder::from(config).interceptor(calls.clone()).build(),
            ),
            sts: aws_sdk_sts::Client::from_conf(
                aws_sdk_sts::config::Builder::from(config).interceptor(calls.clone()).build(),
            ),
            quotas: aws_sdk_servicequotas::Client::from_conf(
                aws_sdk_servicequotas::config::Builder::from(config).interceptor(calls.clone()).build(),
            ),
            region: config.region().map(|r| r.to_string()).unwrap_or_else(|| "us-east-1".into()),
            calls,
            cloudwatch_served: true,
        }
    }

    /// These clients, told what the target's capabilities say it cannot serve.
    pub fn serving(mut self, caps: &crate::capabilities::Capabilities) -> Clients {
        self.cloudwatch_served = !caps.has(crate::capabilities::Divergence::CloudwatchNoCbor);
        self
    }
}

/// Counts requests per operation (`ec2:CreateVpc`), retries included, so reports can
/// give API calls per phase and compare them with the floor.
#[derive(Debug, Clone, Default)]
pub struct CallCounter(Arc<Mutex<BTreeMap<String, usize>>>);

impl CallCounter {
    /// Calls so far, per operation.
    pub fn snapshot(&self) -> BTreeMap<String, usize> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Calls so far, in all.
    pub fn total(&self) -> usize {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).values().sum()
    }
}

impl Intercept for CallCounter {
    fn name(&self) -> &'static str {
        "microseg-call-counter"
    }

    fn read_before_transmit(
        &self,
        _context: &BeforeTransmitInterceptorContextRef<'_>,
        _components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let op =
            cfg.load::<Metadata>().map(|m| format!("{}:{}", m.service(), m.name())).unwrap_or_else(|| "unknown".into());
        *self.0.lock().unwrap_or_else(|e| e.into_inner()).entry(op).or_default() += 1;
        Ok(())
    }
}

/// An AWS call that failed, reduced to what people and retry logic need.
#[derive(Debug, Clone, thiserror::Error)]
pub struct AwsError {
    /// The operation (`CreateVpc`).
    pub operation: &'static str,
    /// The error code, if the service sent one.
    pub code: Option<String>,
    /// The service's message, or the transport error's text.
    pub message: String,
}

impl fmt::Display for AwsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.code {
            Some(code) => write!(f, "{} failed: {code}: {}", self.operation, self.message),
            None => write!(f, "{} failed: {}", self.operation, self.message),
        }
    }
}

impl AwsError {
    /// Wraps an SDK error from `operation`.
    pub fn from_sdk<E, R>(operation: &'static str, err: SdkError<E, R>) -> AwsError
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
        R: fmt::Debug,
    {
        let code = err.code().map(str::to_string);
        let message = match (&err, err.message()) {
            (SdkError::ServiceError(_), Some(m)) => m.to_string(),
            _ => DisplayErrorContext(&err).to_string(),
        };
        AwsError { operation, code, message }
    }

    /// Whether the error says the resource is already gone.
    pub fn is_not_found(&self) -> bool {
        match self.code.as_deref() {
            Some(c) => {
                c.ends_with(".NotFound")
                    || c.ends_with("NotFound")
                    || c == codes::NO_SUCH_ENTITY
                    || c == codes::RESOURCE_NOT_FOUND
                    || c == "ResourceNotFound"
                    || c == codes::GATEWAY_NOT_ATTACHED
            }
            None => false,
        }
    }

    /// Whether the error says a resource the request names is unknown (as opposed to a
    /// permission or an attachment that is not there): what eventual consistency looks
    /// like right after a create.
    pub fn is_unknown_id(&self) -> bool {
        self.is_not_found()
            && !matches!(self.code.as_deref(), Some(codes::PERMISSION_NOT_FOUND) | Some(codes::GATEWAY_NOT_ATTACHED))
    }

    /// Whether a dependent still exists (retry later).
    pub fn is_dependency_violation(&self) -> bool {
        matches!(
            self.code.as_deref(),
            Some(codes::DEPENDENCY_VIOLATION) | Some(codes::DELETE_CONFLICT) | Some(codes::ADDRESS_IN_USE)
        )
    }
}

/// How long a call that names a resource created moments ago keeps retrying "not found".
pub const CONSISTENCY_WINDOW: std::time::Duration = std::time::Duration::from_secs(30);

/// Growing pauses within a deadline: how microseg waits for AWS to catch up (an id to
/// become known, a resource to be listed, a state to change). The first pause is 250 ms;
/// each next one doubles, up to `max`.
#[derive(Debug)]
pub struct Patience {
    deadline: std::time::Instant,
    delay: std::time::Duration,
    max: std::time::Duration,
}

impl Patience {
    /// Pauses for at most `limit` in all, none longer than `max`.
    pub fn new(limit: std::time::Duration, max: std::time::Duration) -> Patience {
        Patience { deadline: std::time::Instant::now() + limit, delay: std::time::Duration::from_millis(250), max }
    }

    /// For a fresh id to become known: [`CONSISTENCY_WINDOW`], pauses up to 4 s.
    pub fn consistency() -> Patience {
        Patience::new(CONSISTENCY_WINDOW, std::time::Duration::from_secs(4))
    }

    /// Whether the deadline has passed.
    pub fn expired(&self) -> bool {
        std::time::Instant::now() >= self.deadline
    }

    /// Whether the next pause would end before the deadline.
    pub fn has_time(&self) -> bool {
        std::time::Instant::now() + self.delay < self.deadline
    }

    /// Sleeps the next pause.
    pub async fn pause(&mut self) {
        tokio::time::sleep(self.delay).await;
        self.delay = (self.delay * 2).min(self.max);
    }
}

/// Sends a request that names a resource this run created moments ago. EC2 and IAM are
/// eventually consistent: AWS documents that an id a create just returned may be
/// unknown to the next call for a while (`InvalidGroup.NotFound` after
/// `CreateSecurityGroup`, `NoSuchEntity` after `CreateRole`). Such an answer is retried
/// with [`Patience::consistency`] (250 ms doubling to 4 s, for at most
/// [`CONSISTENCY_WINDOW`]); anything else, and the last answer, is returned as it is.
/// `call` builds and sends the request afresh each time. Throttling and 5xx are the
/// SDK's own retry's job, below this.
pub async fn settle<T, E, R, F, Fut>(operation: &'static str, mut call: F) -> Result<T, AwsError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, SdkError<E, R>>>,
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: fmt::Debug,
{
    let mut patience = Patience::consistency();
    loop {
        match call().await.map_err(aws_err(operation)) {
            Err(e) if e.is_unknown_id() && patience.has_time() => {
                tracing::debug!(operation, code = e.code.as_deref(), "not found yet; retrying");
                patience.pause().await;
            }
            other => return other,
        }
    }
}

/// A NAT gateway's state (`pending`, `available`, `deleting`, …), or `None` while it is
/// not listed: right after its create (eventual consistency) or once it is gone.
pub async fn nat_gateway_state(ec2: &aws_sdk_ec2::Client, id: &str) -> Result<Option<String>, AwsError> {
    match ec2.describe_nat_gateways().nat_gateway_ids(id).send().await.map_err(aws_err("DescribeNatGateways")) {
        Ok(out) => Ok(out.nat_gateways().first().and_then(|n| n.state()).map(|s| s.as_str().to_string())),
        Err(e) if e.is_not_found() => Ok(None),
        Err(e) => Err(e),
    }
}

/// Every item of a paginated request, or its error as an [`AwsError`]:
/// `all_items!(ec2.describe_vpcs().filters(f), "DescribeVpcs")`.
macro_rules! all_items {
    ($request:expr, $op:literal) => {
        $request.into_paginator().items().send().collect::<Result<Vec<_>, _>>().await.map_err($crate::aws::aws_err($op))
    };
}
pub(crate) use all_items;

/// The partition of a region: `aws-cn` for China, `aws-us-gov` for GovCloud, `aws`
/// elsewhere (what ARNs built by hand must name).
pub fn partition_of(region: &str) -> &'static str {
    if region.starts_with("cn-") {
        "aws-cn"
    } else if region.starts_with("us-gov-") {
        "aws-us-gov"
    } else {
        "aws"
    }
}

/// A log group's ARN without the `:*` suffix that `arn` carries; newer APIs give it as
/// `logGroupArn`, older ones (and some emulators) only as `arn`.
pub fn log_group_arn(g: &aws_sdk_cloudwatchlogs::types::LogGroup) -> Option<String> {
    g.log_group_arn().map(str::to_string).or_else(|| g.arn().map(|a| a.trim_end_matches(":*").to_string()))
}

/// Shorthand: `.send().await.map_err(aws_err("CreateVpc"))`.
pub fn aws_err<E, R>(operation: &'static str) -> impl FnOnce(SdkError<E, R>) -> AwsError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: fmt::Debug,
{
    move |e| AwsError::from_sdk(operation, e)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(code: &str) -> AwsError {
        AwsError { operation: "X", code: Some(code.into()), message: String::new() }
    }

    #[test]
    fn not_found_codes_of_every_service_count_as_gone() {
        for c in [
            "InvalidVpcID.NotFound",
            "InvalidGroup.NotFound",
            "NoSuchEntity",
            "ResourceNotFoundException",
            "InvalidNetworkAclID.NotFound",
        ] {
            assert!(err(c).is_not_found(), "{c}");
        }
        assert!(!err("DependencyViolation").is_not_found());
        assert!(err("DependencyViolation").is_dependency_violation());
    }
}
