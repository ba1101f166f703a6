//! [`FtpsConfig`]: how an FTPS gateway listens, encrypts and advertises passive ports.

use std::fmt;
use std::net::Ipv4Addr;
use std::ops::RangeInclusive;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use wharf_core::EventSink;
use wharf_core::admission::AdmissionLimits;
use wharf_core::session_watch::WatchOptions;

use crate::TlsFiles;

/// Settings of an FTPS gateway.
#[derive(Clone)]
pub struct FtpsConfig {
    /// Certificate chain and private key (PEM). Read again for every connection, so a renewed
    /// certificate is used without a restart.
    pub tls: TlsFiles,
    /// Ports the gateway listens on for passive data connections (PASV, EPSV).
    pub passive_ports: RangeInclusive<u16>,
    /// The address a PASV reply advertises.
    pub passive_host: PassiveHost,
    /// A control connection without commands for this long is closed (not while a transfer
    /// runs).
    pub idle_timeout: Duration,
    /// Most control connections served at once; further ones wait in the accept queue.
    pub max_connections: usize,
    /// A connection that has not logged in by then is closed.
    pub login_timeout: Duration,
    /// Connections taken into the login phase, counted by the client's address (the PROXY
    /// header's when enabled); see [`wharf_core::admission`].
    pub admission: AdmissionLimits,
    /// How long the gateway waits for a data connection, and again for its TLS handshake.
    pub data_timeout: Duration,
    /// Every control connection starts with a PROXY protocol header (v1 or v2) from a load
    /// balancer, which names the real client; a connection without a valid one is dropped.
    /// Data connections may carry one too. Off: the socket's peer is the client.
    pub proxy_protocol: bool,
    /// The load balancers whose PROXY headers are believed. With `proxy_protocol`, a control
    /// connection from any other peer is dropped (a client must not name its own address), and
    /// a data connection from one is checked by its own address.
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// A data connection must resume the control connection's TLS session, so that only the
    /// client holding the control connection can open it (another program on the client's
    /// address cannot race it to the passive port and take its data). Clients that cannot
    /// resume (Python's ftplib as is, some old ones) need this off.
    pub require_tls_resumption: bool,
    /// How often logged-in sessions are re-checked with the control plane, and how long one
    /// may last (see [`wharf_core::session_watch`]).
    pub session_watch: WatchOptions,
    /// Where sessions report uploads, deletes, renames and new directories (none: no events).
    pub events: Option<Arc<dyn EventSink>>,
}

impl fmt::Debug for FtpsConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FtpsConfig")
            .field("tls", &self.tls)
            .field("passive_ports", &self.passive_ports)
            .field("passive_host", &self.passive_host)
            .field("idle_timeout", &self.idle_timeout)
            .field("max_connections", &self.max_connections)
            .field("login_timeout", &self.login_timeout)
            .field("admission", &self.admission)
            .field("data_timeout", &self.data_timeout)
            .field("proxy_protocol", &self.proxy_protocol)
            .field("trusted_proxies", &self.trusted_proxies)
            .field("require_tls_resumption", &self.require_tls_resumption)
            .field("session_watch", &self.session_watch)
            .field("events", &self.events.is_some())
            .finish()
    }
}

impl FtpsConfig {
    /// Whether `peer` may send a PROXY header (PROXY protocol on, and `peer` a trusted proxy).
    pub(crate) fn proxy_from(&self, peer: std::net::IpAddr) -> bool {
        let peer = peer.to_canonical();
        self.proxy_protocol && self.trusted_proxies.iter().any(|net| net.contains(&peer))
    }

    pub fn new(tls: TlsFiles) -> Self {
        FtpsConfig {
            tls,
            passive_ports: 50000..=50099,
            passive_host: PassiveHost::FromConnection,
            idle_timeout: Duration::from_secs(600),
            max_connections: 1024,
            login_timeout: Duration::from_secs(20),
            admission: AdmissionLimits::default(),
            data_timeout: Duration::from_secs(30),
            proxy_protocol: false,
            trusted_proxies: Vec::new(),
            require_tls_resumption: true,
            session_watch: WatchOptions::default(),
            events: None,
        }
    }
}

/// What address a PASV reply advertises. (EPSV replies carry only the port.)
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum PassiveHost {
    /// The address the client connected to (right when clients reach the gateway directly).
    #[default]
    FromConnection,
    /// A fixed IPv4 address, e.g. the load balancer's public one.
    Ip(Ipv4Addr),
    /// A DNS name, resolved (to IPv4) on every PASV.
    Dns(String),
}

impl FromStr for PassiveHost {
    type Err = ConfigError;

    /// Empty (or `from-connection`): [`PassiveHost::FromConnection`]; an IPv4 address:
    /// [`PassiveHost::Ip`]; anything else that looks like a host name: [`PassiveHost::Dns`].
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        if s.is_empty() || s.eq_ignore_ascii_case("from-connection") {
            return Ok(PassiveHost::FromConnection);
        }
        if let Ok(ip) = s.parse::<Ipv4Addr>() {
            return Ok(PassiveHost::Ip(ip));
        }
        if s.parse::<std::net::Ipv6Addr>().is_ok() {
            return Err(ConfigError::PassiveHost(format!(
                "{s}: PASV can only advertise an IPv4 address"
            )));
        }
        let valid = s.len() <= 253
            && s.split('.').all(|label| {
                !label.is_empty()
                    && label.len() <= 63
                    && label
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-')
                    && !label.starts_with('-')
                    && !label.ends_with('-')
            });
        if valid {
            Ok(PassiveHost::Dns(s.to_owned()))
        } else {
            Err(ConfigError::PassiveHost(format!(
                "{s}: expected an IPv4 address or a DNS name"
            )))
        }
    }
}

/// A configuration value that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("invalid passive port range {0}")]
    PortRange(String),
    #[error("invalid passive host {0}")]
    PassiveHost(String),
}

/// Parses a passive port range such as `50000-50099` (inclusive; a single port is allowed).
pub fn parse_port_range(s: &str) -> Result<RangeInclusive<u16>, ConfigError> {
    let bad = |why: &str| ConfigError::PortRange(format!("'{s}': {why}"));
    let (start, end) = match s.trim().split_once('-') {
        Some((a, b)) => (a.trim(), b.trim()),
        None => (s.trim(), s.trim()),
    };
    let start: u16 = start
        .parse()
        .map_err(|_| bad("expected FIRST-LAST, e.g. 50000-50099"))?;
    let end: u16 = end
        .parse()
        .map_err(|_| bad("expected FIRST-LAST, e.g. 50000-50099"))?;
    if start == 0 || start > end {
        return Err(bad(
            "the first port must be at least 1 and not above the last",
        ));
    }
    Ok(start..=end)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_ranges() {
        assert_eq!(parse_port_range("50000-50099").unwrap(), 50000..=50099);
        assert_eq!(parse_port_range(" 2000 - 2000 ").unwrap(), 2000..=2000);
        assert_eq!(parse_port_range("2100").unwrap(), 2100..=2100);
        for bad in ["", "a-b", "0-10", "10-5", "1-70000", "-5"] {
            assert!(parse_port_range(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn passive_hosts() {
        assert_eq!(
            "".parse::<PassiveHost>().unwrap(),
            PassiveHost::FromConnection
        );
        assert_eq!(
            "from-connection".parse::<PassiveHost>().unwrap(),
            PassiveHost::FromConnection
        );
        assert_eq!(
            "203.0.113.7".parse::<PassiveHost>().unwrap(),
            PassiveHost::Ip(Ipv4Addr::new(203, 0, 113, 7))
        );
        assert_eq!(
            "ftp.example.com".parse::<PassiveHost>().unwrap(),
            PassiveHost::Dns("ftp.example.com".into())
        );
        for bad in ["::1", "a b", "-x.com", "x..com", "a/b"] {
            assert!(bad.parse::<PassiveHost>().is_err(), "{bad}");
        }
    }
}
