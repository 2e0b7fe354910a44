//! Where the emulators microseg starts listen: loopback, unless asked otherwise.
//!
//! An emulator answers any AWS call without authentication. While a run lasts, anyone who
//! can reach its port can read and change the deployment, or create resources in it. So
//! the host process binds 127.0.0.1 and the container publishes its port on 127.0.0.1
//! alone (Docker's default is every interface, IPv4 and IPv6).
//!
//! Another container on a Docker network cannot reach loopback. For that case,
//! `MICROSEG_LISTEN_ADDRESS` names the address to listen on (`0.0.0.0` for every
//! interface), and microseg warns each time it starts an emulator there.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use super::TargetError;

/// The variable that moves emulators off loopback.
pub const LISTEN_ENV: &str = "MICROSEG_LISTEN_ADDRESS";

/// The address an emulator listens on, and the one clients connect to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Listen {
    /// What the emulator binds (or where the container's port is published).
    pub bind: IpAddr,
}

impl Listen {
    /// Loopback, the default.
    pub const LOOPBACK: Listen = Listen { bind: IpAddr::V4(Ipv4Addr::LOCALHOST) };

    /// From `MICROSEG_LISTEN_ADDRESS`, or loopback when it is unset or empty. A value
    /// that is not an IP address is an error naming the variable and the value; a
    /// non-loopback address is logged as a warning.
    pub fn from_env() -> Result<Listen, TargetError> {
        let value = std::env::var(LISTEN_ENV).unwrap_or_default();
        let listen = Listen::parse(&value)?;
        if !listen.bind.is_loopback() {
            tracing::warn!(
                "{LISTEN_ENV}={value}: the emulator listens on {}, not loopback; anyone who can reach it can read and \
                 change the deployment while the run lasts",
                listen.bind
            );
        }
        Ok(listen)
    }

    fn parse(value: &str) -> Result<Listen, TargetError> {
        if value.trim().is_empty() {
            return Ok(Listen::LOOPBACK);
        }
        value
            .trim()
            .parse()
            .map(|bind| Listen { bind })
            .map_err(|_| TargetError::ListenAddress { value: value.to_string() })
    }

    /// The address a client on this machine connects to: the bound one, or loopback of
    /// the same family when the emulator binds every interface.
    pub fn connect(self) -> IpAddr {
        match self.bind {
            IpAddr::V4(a) if a.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V6(a) if a.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
            other => other,
        }
    }

    /// `http://<connect address>:<port>`, with brackets for IPv6.
    pub fn url(self, port: u16) -> String {
        format!("http://{}", SocketAddr::new(self.connect(), port))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_unless_an_address_is_named() {
        assert_eq!(Listen::parse("").unwrap(), Listen::LOOPBACK);
        assert_eq!(Listen::parse(" ").unwrap(), Listen::LOOPBACK);
        assert_eq!(Listen::LOOPBACK.url(4566), "http://127.0.0.1:4566");
        let every = Listen::parse("0.0.0.0").unwrap();
        assert_eq!(every.bind, IpAddr::V4(Ipv4Addr::UNSPECIFIED));
        assert_eq!(every.url(4566), "http://127.0.0.1:4566", "clients here still connect on loopback");
        assert_eq!(Listen::parse("::").unwrap().url(4566), "http://[::1]:4566");
        assert_eq!(Listen::parse("172.17.0.1").unwrap().url(80), "http://172.17.0.1:80");
    }

    #[test]
    fn a_value_that_is_no_address_is_named_in_the_error() {
        let err = Listen::parse("localhost:4566").unwrap_err().to_string();
        assert!(err.contains("MICROSEG_LISTEN_ADDRESS") && err.contains("\"localhost:4566\""), "{err}");
    }
}
