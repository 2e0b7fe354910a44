//! LocalStack in a container, through testcontainers.
//!
//! The image is `MICROSEG_LOCALSTACK_IMAGE`, by default `localstack/localstack:4.14.0`
//! (the last tag that runs without an auth token). Where no registry is reachable,
//! `localstack/build-image.sh` builds `microseg/localstack:4.14.0` offline and the
//! variable selects it. Readiness is `Ready.` on stdout, then the health endpoint; the
//! container is removed on drop (testcontainers' RAII), and registered with the reaper
//! for the case where the owner lives in a `static`.

use std::collections::HashMap;
use std::process::Command;
use std::time::{Duration, Instant};

use testcontainers::bollard::models::PortBinding;
use testcontainers::core::{ContainerPort, WaitFor};
use testcontainers::runners::AsyncRunner;
use testcontainers::{ContainerAsync, GenericImage, ImageExt};

use super::TargetError;
use super::health::{self, NotReady, REQUIRED_SERVICES};
use super::listen::Listen;
use super::reaper::{self, Reapable, Ticket};

/// The image used when `MICROSEG_LOCALSTACK_IMAGE` is not set.
pub const DEFAULT_IMAGE: &str = "localstack/localstack:4.14.0";

/// The image `localstack/build-image.sh` builds where no registry is reachable.
pub const OFFLINE_IMAGE: &str = "microseg/localstack:4.14.0";

/// The image to run: `MICROSEG_LOCALSTACK_IMAGE`; else [`DEFAULT_IMAGE`], unless only the
/// offline build is present locally, in which case that one.
pub fn configured_image() -> String {
    if let Some(image) = std::env::var("MICROSEG_LOCALSTACK_IMAGE").ok().filter(|s| !s.is_empty()) {
        return image;
    }
    if !image_present(DEFAULT_IMAGE) && image_present(OFFLINE_IMAGE) {
        return OFFLINE_IMAGE.into();
    }
    DEFAULT_IMAGE.into()
}

/// Whether a Docker engine answers, and if not, what it said.
pub fn docker_status() -> Result<String, String> {
    let out = Command::new("docker")
        .args(["version", "--format", "{{.Server.Version}}"])
        .output()
        .map_err(|e| format!("docker CLI not runnable: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    } else {
        let host = std::env::var("DOCKER_HOST").unwrap_or_else(|_| "unix:///var/run/docker.sock".into());
        Err(format!("Docker engine not reachable at {host}: {}", String::from_utf8_lossy(&out.stderr).trim()))
    }
}

/// Whether the image is present locally (nothing is pulled to find out).
pub fn image_present(image: &str) -> bool {
    Command::new("docker").args(["image", "inspect", image]).output().map(|o| o.status.success()).unwrap_or(false)
}

/// A running LocalStack container.
pub struct LocalStackContainer {
    container: Option<ContainerAsync<GenericImage>>,
    port: u16,
    listen: Listen,
    ticket: Ticket,
    /// The image it runs.
    pub image: String,
    /// From `docker run` to every service available.
    pub start_to_ready: Duration,
    /// Version the health endpoint reported.
    pub version: String,
}

impl std::fmt::Debug for LocalStackContainer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalStackContainer").field("image", &self.image).field("port", &self.port).finish()
    }
}

impl LocalStackContainer {
    /// Starts the configured image and waits until every required service is available.
    pub async fn start(startup_timeout: Duration) -> Result<LocalStackContainer, TargetError> {
        let image = configured_image();
        let (name, tag) = image.rsplit_once(':').unwrap_or((image.as_str(), "latest"));
        let started = Instant::now();
        let listen = Listen::from_env()?;
        // Docker publishes an exposed port on every interface, IPv4 and IPv6; bind it to
        // loopback alone (listen.rs). An empty host port lets Docker pick a free one.
        let bind = listen.bind.to_string();
        let container = GenericImage::new(name, tag)
            .with_exposed_port(ContainerPort::Tcp(4566))
            .with_wait_for(WaitFor::message_on_stdout("Ready."))
            .with_env_var("SERVICES", REQUIRED_SERVICES.join(","))
            .with_env_var("EAGER_SERVICE_LOADING", "1")
            .with_env_var("DISABLE_EVENTS", "1")
            .with_env_var("SKIP_SSL_CERT_DOWNLOAD", "1")
            .with_label("managed-by", "microseg")
            .with_startup_timeout(startup_timeout)
            .with_host_config_modifier(move |host| {
                let binding = PortBinding { host_ip: Some(bind.clone()), host_port: Some(String::new()) };
                host.publish_all_ports = Some(false);
                host.port_bindings = Some(HashMap::from([("4566/tcp".to_string(), Some(vec![binding]))]));
            })
            .start()
            .await
            .map_err(|e| TargetError::Container { image: image.clone(), message: e.to_string() })?;
        let ticket = reaper::register(Reapable::Container(container.id().to_string()));
        let port = match listen.bind {
            std::net::IpAddr::V4(_) => container.get_host_port_ipv4(4566).await,
            std::net::IpAddr::V6(_) => container.get_host_port_ipv6(4566).await,
        }
        .map_err(|e| TargetError::Container { image: image.clone(), message: e.to_string() })?;
        let mut this = LocalStackContainer {
            container: Some(container),
            port,
            listen,
            ticket,
            image: image.clone(),
            start_to_ready: Duration::ZERO,
            version: String::new(),
        };
        let remaining = startup_timeout.saturating_sub(started.elapsed());
        match health::wait_ready(&this.endpoint(), remaining, || None).await {
            Ok(h) => {
                this.start_to_ready = started.elapsed();
                this.version = h.version.unwrap_or_default();
                Ok(this)
            }
            Err(why) => {
                let condition = match why {
                    NotReady::Exited(s) => s,
                    NotReady::Broken(services) => format!("a service failed to load: {services}"),
                    NotReady::Timeout { waited, last } => {
                        format!("services not available after {waited:.0?} (last: {last})")
                    }
                };
                this.stop().await;
                Err(TargetError::NotReady {
                    target: format!("localstack-container ({image})"),
                    condition,
                    log: None,
                    tail: String::new(),
                })
            }
        }
    }

    /// `http://127.0.0.1:<mapped port>` (the published address, when not loopback)
    pub fn endpoint(&self) -> String {
        self.listen.url(self.port)
    }

    /// The container id.
    pub fn id(&self) -> Option<&str> {
        self.container.as_ref().map(|c| c.id())
    }

    /// Removes the container now.
    pub async fn stop(mut self) {
        if let Some(c) = self.container.take() {
            if let Err(e) = c.rm().await {
                tracing::warn!("removing LocalStack container: {e}");
            }
            reaper::unregister(self.ticket);
        }
    }
}

impl Drop for LocalStackContainer {
    fn drop(&mut self) {
        // testcontainers removes the container in its own Drop; the reaper entry goes
        // with it. `docker rm -f` here as well would race that removal.
        if self.container.take().is_some() {
            reaper::unregister(self.ticket);
        }
    }
}
