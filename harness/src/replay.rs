//! Tests at the API boundary: an HTTP client for the SDK that answers each request with
//! a response written as AWS writes it (XML for EC2, IAM and STS; JSON for CloudWatch
//! Logs and Service Quotas; CBOR for CloudWatch, which [`Cbor`] writes), so the real request building, response parsing, observe
//! and preflight code run unchanged, with no network and no emulator.
//!
//! The SDK's own replay client (`StaticReplayClient`) is behind the `test-util` feature
//! of `aws-smithy-http-client`; turning that feature on in the test build alone would
//! build the whole SDK a second time for `cargo test` (docs/BUILD.md, "Build once, test
//! without rebuilding"). This one sits on the `HttpClient` trait of
//! `aws-smithy-runtime-api`, which the engine depends on already, and answers by
//! operation instead of by position, since the code under test sends its reads
//! concurrently.

use std::sync::{Arc, Mutex};

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_ec2::config::Credentials;
use aws_smithy_runtime_api::client::http::{
    HttpClient, HttpConnector, HttpConnectorFuture, HttpConnectorSettings, SharedHttpClient, SharedHttpConnector,
};
use aws_smithy_runtime_api::client::orchestrator::{HttpRequest, HttpResponse};
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_runtime_api::http::StatusCode;
use aws_smithy_types::body::SdkBody;

/// One request as it went over the wire: the operation's name and its body.
#[derive(Debug, Clone)]
pub struct Request {
    /// The service's operation (`DescribeNetworkAcls`, `GetServiceQuota`).
    pub operation: String,
    /// The request body (form-encoded for the query protocols, JSON otherwise).
    pub body: String,
}

impl Request {
    /// The value of a form field of a query-protocol request (`Filter.1.Name`), decoded.
    pub fn form(&self, key: &str) -> Option<String> {
        self.body.split('&').find_map(|pair| {
            let (k, v) = pair.split_once('=')?;
            (percent_encoding::percent_decode_str(k).decode_utf8_lossy() == key)
                .then(|| percent_encoding::percent_decode_str(&v.replace('+', " ")).decode_utf8_lossy().into_owned())
        })
    }

    /// Every value of form fields whose name starts with `prefix` (`ActionNames.member.`).
    pub fn form_values(&self, prefix: &str) -> Vec<String> {
        self.body
            .split('&')
            .filter_map(|pair| {
                let (k, v) = pair.split_once('=')?;
                let k = percent_encoding::percent_decode_str(k).decode_utf8_lossy();
                k.starts_with(prefix).then(|| percent_encoding::percent_decode_str(v).decode_utf8_lossy().into_owned())
            })
            .collect()
    }
}

/// An answer: status, content type and body.
#[derive(Debug, Clone)]
pub struct Answer {
    /// HTTP status.
    pub status: u16,
    /// Body.
    pub body: Vec<u8>,
    /// Its content type.
    pub content_type: &'static str,
}

impl Answer {
    /// 200 with this XML or JSON body (the content type follows its first character).
    pub fn ok(body: impl Into<String>) -> Answer {
        Answer::with_status(200, body)
    }

    /// This status with this XML or JSON body.
    pub fn with_status(status: u16, body: impl Into<String>) -> Answer {
        let body: String = body.into();
        let content_type = if body.trim_start().starts_with('<') { "text/xml" } else { "application/x-amz-json-1.1" };
        Answer { status, body: body.into_bytes(), content_type }
    }

    /// 200 with a CBOR body (CloudWatch's Smithy RPC v2 protocol).
    pub fn cbor(body: Cbor) -> Answer {
        Answer { status: 200, body: body.0, content_type: "application/cbor" }
    }

    /// An AWS JSON 1.1 error (Service Quotas, CloudWatch Logs).
    pub fn json_error(status: u16, code: &str, message: &str) -> Answer {
        Answer::with_status(status, format!(r#"{{"__type":"{code}","Message":"{message}"}}"#))
    }
}

/// A CBOR document (RFC 8949), written item by item: the few major types a CloudWatch
/// answer uses.
#[derive(Debug, Clone, Default)]
pub struct Cbor(Vec<u8>);

impl Cbor {
    fn head(mut self, major: u8, n: u64) -> Cbor {
        let m = major << 5;
        match n {
            0..=23 => self.0.push(m | n as u8),
            24..=0xff => self.0.extend([m | 24, n as u8]),
            0x100..=0xffff => {
                self.0.push(m | 25);
                self.0.extend((n as u16).to_be_bytes());
            }
            0x1_0000..=0xffff_ffff => {
                self.0.push(m | 26);
                self.0.extend((n as u32).to_be_bytes());
            }
            _ => {
                self.0.push(m | 27);
                self.0.extend(n.to_be_bytes());
            }
        }
        self
    }

    /// A map of `n` pairs follows (each a key, then a value).
    pub fn map(self, n: usize) -> Cbor {
        self.head(5, n as u64)
    }

    /// An array of `n` items follows.
    pub fn array(self, n: usize) -> Cbor {
        self.head(4, n as u64)
    }

    /// A text string.
    pub fn text(self, s: &str) -> Cbor {
        let mut c = self.head(3, s.len() as u64);
        c.0.extend(s.as_bytes());
        c
    }

    /// A non-negative integer.
    pub fn uint(self, n: u64) -> Cbor {
        self.head(0, n)
    }

    /// A double.
    pub fn float(mut self, f: f64) -> Cbor {
        self.0.push(0xfb);
        self.0.extend(f.to_be_bytes());
        self
    }

    /// `key: text`.
    pub fn pair(self, key: &str, value: &str) -> Cbor {
        self.text(key).text(value)
    }
}

type Route = dyn Fn(&Request) -> Option<Answer> + Send + Sync;

/// The client: a function from request to answer, and the record of every request.
#[derive(Clone)]
pub struct Replay {
    route: Arc<Route>,
    seen: Arc<Mutex<Vec<Request>>>,
}

impl std::fmt::Debug for Replay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Replay").field("seen", &self.seen.lock().unwrap().len()).finish()
    }
}

impl Replay {
    /// Answers with `route`; a request it has no answer for fails the test that sent it
    /// with a 599 naming the operation (an unexpected call is a finding, not a hang).
    pub fn new(route: impl Fn(&Request) -> Option<Answer> + Send + Sync + 'static) -> Replay {
        Replay { route: Arc::new(route), seen: Arc::default() }
    }

    /// Every request so far, in the order they arrived.
    pub fn requests(&self) -> Vec<Request> {
        self.seen.lock().unwrap().clone()
    }

    /// An SDK config that sends everything to this client: fixed region and fake
    /// credentials, and no retries (a replayed answer does not change when asked again).
    pub async fn sdk_config(&self, region: &str) -> SdkConfig {
        aws_config::defaults(BehaviorVersion::latest())
            .http_client(SharedHttpClient::new(self.clone()))
            .region(Region::new(region.to_string()))
            .credentials_provider(Credentials::new("AKIAREPLAYREPLAYREPL", "replay", None, None, "replay"))
            .retry_config(aws_config::retry::RetryConfig::disabled())
            .endpoint_url("https://replay.invalid")
            .load()
            .await
    }

    fn answer(&self, request: HttpRequest) -> HttpResponse {
        let body = request.body().bytes().map(|b| String::from_utf8_lossy(b).into_owned()).unwrap_or_default();
        let operation = operation_of(&request, &body);
        let req = Request { operation, body };
        self.seen.lock().unwrap().push(req.clone());
        let answer = (self.route)(&req)
            .unwrap_or_else(|| Answer::with_status(599, format!("no replayed answer for {}", req.operation)));
        let mut response =
            HttpResponse::new(StatusCode::try_from(answer.status).expect("a status"), SdkBody::from(answer.body));
        response.headers_mut().insert("content-type", answer.content_type);
        if answer.content_type == "application/cbor" {
            response.headers_mut().insert("smithy-protocol", "rpc-v2-cbor");
        }
        response
    }
}

/// The operation a request calls: the `X-Amz-Target` header's last part (JSON
/// protocols), the path's last segment (`…/operation/DescribeAlarms`, Smithy RPC v2), or
/// the form's `Action` (EC2, IAM, STS).
fn operation_of(request: &HttpRequest, body: &str) -> String {
    if let Some(target) = request.headers().get("x-amz-target") {
        return target.rsplit('.').next().unwrap_or(target).to_string();
    }
    let uri = request.uri().to_string();
    if let Some((_, op)) = uri.rsplit_once("/operation/") {
        return op.to_string();
    }
    Request { operation: String::new(), body: body.to_string() }.form("Action").unwrap_or(uri)
}

impl HttpConnector for Replay {
    fn call(&self, request: HttpRequest) -> HttpConnectorFuture {
        HttpConnectorFuture::ready(Ok(self.answer(request)))
    }
}

impl HttpClient for Replay {
    fn http_connector(
        &self,
        _settings: &HttpConnectorSettings,
        _components: &RuntimeComponents,
    ) -> SharedHttpConnector {
        SharedHttpConnector::new(self.clone())
    }
}

/// An EC2 response document: `<{Operation}Response>` with a request id and `inner`.
pub fn ec2(operation: &str, inner: &str) -> String {
    format!(
        r#"<{operation}Response xmlns="http://ec2.amazonaws.com/doc/2016-11-15/"><requestId>replay</requestId>{inner}</{operation}Response>"#
    )
}

/// An IAM or STS response document: `<{Operation}Response><{Operation}Result>`.
pub fn query(namespace: &str, operation: &str, result: &str) -> String {
    format!(
        r#"<{operation}Response xmlns="{namespace}"><{operation}Result>{result}</{operation}Result><ResponseMetadata><RequestId>replay</RequestId></ResponseMetadata></{operation}Response>"#
    )
}

/// IAM's namespace.
pub const IAM: &str = "https://iam.amazonaws.com/doc/2010-05-08/";
/// STS's namespace.
pub const STS: &str = "https://sts.amazonaws.com/doc/2011-06-15/";

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn requests_are_answered_by_operation_and_recorded() {
        let replay = Replay::new(|r| match r.operation.as_str() {
            "GetCallerIdentity" => Some(Answer::ok(query(
                STS,
                "GetCallerIdentity",
                "<Arn>arn:aws:iam::123456789012:user/a</Arn><UserId>AIDA</UserId><Account>123456789012</Account>",
            ))),
            _ => None,
        });
        let clients = crate::aws::Clients::new(&replay.sdk_config("eu-west-1").await);
        let id = clients.sts.get_caller_identity().send().await.unwrap();
        assert_eq!(id.account(), Some("123456789012"));
        let err = clients.ec2.describe_vpcs().send().await.unwrap_err();
        assert!(format!("{err:?}").contains("599") || format!("{err:?}").contains("DescribeVpcs"), "{err:?}");
        let ops: Vec<String> = replay.requests().into_iter().map(|r| r.operation).collect();
        assert_eq!(ops, ["GetCallerIdentity", "DescribeVpcs"]);
        assert_eq!(
            clients.calls.snapshot().keys().cloned().collect::<Vec<_>>(),
            ["EC2:DescribeVpcs", "STS:GetCallerIdentity"]
        );
    }
}
