//! The PROXY protocol (HAProxy's specification, versions 1 and 2): the header a load balancer
//! puts in front of a connection to tell the gateway who the client really is.
//!
//! Only what is needed is read: exactly the header's bytes (never more, so what follows stays
//! in the socket for FTP or TLS), bounded in length, with the source and destination
//! addresses of TCP over IPv4 or IPv6. `LOCAL` (v2, the balancer's own health checks) and
//! `UNKNOWN` (v1) carry no addresses.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use tokio::io::{AsyncRead, AsyncReadExt};

/// The twelve bytes every version 2 header starts with.
pub(crate) const V2_SIGNATURE: [u8; 12] = [
    0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A,
];
/// Longest version 1 header, CRLF included (from the specification).
const V1_MAX: usize = 107;
/// Longest version 2 header body accepted: the addresses plus a generous allowance for the
/// TLVs load balancers add (AWS, Azure and GCP add a few dozen bytes).
const V2_MAX_BODY: usize = 4096;

/// What a PROXY header says about a connection. `None` addresses: the header carried none
/// (v1 `UNKNOWN`, v2 `LOCAL` or an address family other than TCP over IP); the socket's own
/// addresses apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ProxyHeader {
    /// The client, as the load balancer saw it.
    pub source: Option<SocketAddr>,
    /// The address the client connected to (the load balancer's).
    pub destination: Option<SocketAddr>,
}

impl ProxyHeader {
    const EMPTY: ProxyHeader = ProxyHeader {
        source: None,
        destination: None,
    };
}

/// Why a connection's PROXY header was refused.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ProxyError {
    #[error("the connection does not start with a PROXY protocol header")]
    Missing,
    #[error("malformed PROXY protocol header: {0}")]
    Malformed(&'static str),
    #[error("reading the PROXY protocol header: {0}")]
    Io(#[from] std::io::Error),
}

/// Whether a connection whose first byte is `first` starts with a PROXY header (`P` of
/// `PROXY ` for version 1, CR of the signature for version 2; a TLS handshake starts with
/// 0x16).
pub(crate) fn starts_header(first: u8) -> bool {
    first == b'P' || first == V2_SIGNATURE[0]
}

/// Reads one PROXY header (version 1 or 2) from the start of `stream`, and nothing after it.
pub(crate) async fn read_header<R: AsyncRead + Unpin>(
    stream: &mut R,
) -> Result<ProxyHeader, ProxyError> {
    // Both versions' headers are at least 12 bytes long ("PROXY UNKNOWN\r\n" is 15).
    let mut start = [0u8; 12];
    stream.read_exact(&mut start).await?;
    if start == V2_SIGNATURE {
        let mut fixed = [0u8; 4];
        stream.read_exact(&mut fixed).await?;
        let len = usize::from(u16::from_be_bytes([fixed[2], fixed[3]]));
        if len > V2_MAX_BODY {
            return Err(ProxyError::Malformed("version 2 header too long"));
        }
        let mut body = vec![0u8; len];
        stream.read_exact(&mut body).await?;
        return parse_v2(fixed[0], fixed[1], &body);
    }
    if !start.starts_with(b"PROXY ") {
        return Err(ProxyError::Missing);
    }
    let mut line = start.to_vec();
    while !line.ends_with(b"\r\n") {
        if line.len() >= V1_MAX {
            return Err(ProxyError::Malformed("version 1 header too long"));
        }
        line.push(stream.read_u8().await?);
    }
    parse_v1(&line)
}

/// Parses a version 1 header line, CRLF included.
pub(crate) fn parse_v1(line: &[u8]) -> Result<ProxyHeader, ProxyError> {
    let bad = ProxyError::Malformed;
    let text = std::str::from_utf8(line).map_err(|_| bad("version 1 header is not ASCII"))?;
    let text = text
        .strip_suffix("\r\n")
        .ok_or(bad("version 1 header does not end with CRLF"))?;
    let mut parts = text.split(' ');
    if parts.next() != Some("PROXY") {
        return Err(bad("version 1 header does not start with PROXY"));
    }
    let v6 = match parts.next() {
        // The rest of an UNKNOWN line is to be ignored.
        Some("UNKNOWN") => return Ok(ProxyHeader::EMPTY),
        Some("TCP4") => false,
        Some("TCP6") => true,
        _ => return Err(bad("version 1 protocol is not TCP4, TCP6 or UNKNOWN")),
    };
    let mut ip = || -> Result<IpAddr, ProxyError> {
        let ip: IpAddr = parts
            .next()
            .and_then(|s| s.parse().ok())
            .ok_or(bad("version 1 header has an invalid address"))?;
        if ip.is_ipv6() != v6 {
            return Err(bad("version 1 address does not match the protocol"));
        }
        Ok(ip)
    };
    let (source, destination) = (ip()?, ip()?);
    let mut port = || -> Result<u16, ProxyError> {
        parts
            .next()
            .filter(|s| !s.starts_with('0') || *s == "0")
            .and_then(|s| s.parse().ok())
            .ok_or(bad("version 1 header has an invalid port"))
    };
    let (source_port, destination_port) = (port()?, port()?);
    if parts.next().is_some() {
        return Err(bad("version 1 header has extra fields"));
    }
    Ok(ProxyHeader {
        source: Some(SocketAddr::new(source, source_port)),
        destination: Some(SocketAddr::new(destination, destination_port)),
    })
}

/// Parses a version 2 header after its signature: the version/command byte, the
/// family/protocol byte and the body.
pub(crate) fn parse_v2(
    version_command: u8,
    family: u8,
    body: &[u8],
) -> Result<ProxyHeader, ProxyError> {
    let bad = ProxyError::Malformed;
    if version_command >> 4 != 2 {
        return Err(bad("unsupported version"));
    }
    match version_command & 0x0F {
        // LOCAL: the balancer's own connection (health check); no addresses.
        0 => return Ok(ProxyHeader::EMPTY),
        1 => {}
        _ => return Err(bad("unknown version 2 command")),
    }
    match family {
        // TCP over IPv4: 4 + 4 address bytes, 2 + 2 port bytes.
        0x11 => {
            let a = body
                .get(..12)
                .ok_or(bad("version 2 IPv4 addresses cut short"))?;
            let ip = |i: usize| IpAddr::V4(Ipv4Addr::new(a[i], a[i + 1], a[i + 2], a[i + 3]));
            let port = |i: usize| u16::from_be_bytes([a[i], a[i + 1]]);
            Ok(ProxyHeader {
                source: Some(SocketAddr::new(ip(0), port(8))),
                destination: Some(SocketAddr::new(ip(4), port(10))),
            })
        }
        // TCP over IPv6: 16 + 16 address bytes, 2 + 2 port bytes.
        0x21 => {
            let a = body
                .get(..36)
                .ok_or(bad("version 2 IPv6 addresses cut short"))?;
            let ip = |i: usize| {
                let mut octets = [0u8; 16];
                octets.copy_from_slice(&a[i..i + 16]);
                IpAddr::V6(Ipv6Addr::from(octets))
            };
            let port = |i: usize| u16::from_be_bytes([a[i], a[i + 1]]);
            Ok(ProxyHeader {
                source: Some(SocketAddr::new(ip(0), port(32))),
                destination: Some(SocketAddr::new(ip(16), port(34))),
            })
        }
        // UNSPEC, UDP, UNIX sockets: nothing usable for an IP check; the socket's addresses
        // apply.
        _ => Ok(ProxyHeader::EMPTY),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn read(bytes: &[u8]) -> (Result<ProxyHeader, ProxyError>, Vec<u8>) {
        let mut stream = bytes;
        let header = read_header(&mut stream).await;
        (header, stream.to_vec())
    }

    #[tokio::test]
    async fn version_1_tcp4_and_tcp6() {
        let (header, rest) = read(b"PROXY TCP4 203.0.113.7 192.0.2.1 51234 2121\r\nUSER x").await;
        let header = header.unwrap();
        assert_eq!(header.source, Some("203.0.113.7:51234".parse().unwrap()));
        assert_eq!(header.destination, Some("192.0.2.1:2121".parse().unwrap()));
        assert_eq!(rest, b"USER x", "nothing after the header is consumed");
        let (header, _) = read(b"PROXY TCP6 2001:db8::1 2001:db8::2 1 2\r\n").await;
        assert_eq!(
            header.unwrap().source,
            Some("[2001:db8::1]:1".parse().unwrap())
        );
        let (header, rest) = read(b"PROXY UNKNOWN ffff::1 whatever\r\nX").await;
        assert_eq!(header.unwrap(), ProxyHeader::EMPTY);
        assert_eq!(rest, b"X");
    }

    #[tokio::test]
    async fn version_1_garbage_is_refused() {
        for bad in [
            &b"PROXY TCP4 203.0.113.7 192.0.2.1 51234\r\n"[..],
            b"PROXY TCP4 2001:db8::1 192.0.2.1 1 2\r\n",
            b"PROXY TCP4 203.0.113.7 192.0.2.1 1 70000\r\n",
            b"PROXY TCP4 203.0.113.7 192.0.2.1 01 2\r\n",
            b"PROXY TCP4 203.0.113.7 192.0.2.1 1 2 3\r\n",
            b"PROXY UDP4 203.0.113.7 192.0.2.1 1 2\r\n",
            b"PROXY TCP4 203.0.113.7 192.0.2.1 1 2\n",
        ] {
            assert!(
                read(bad).await.0.is_err(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
        let long = [b"PROXY ".to_vec(), vec![b'1'; 200]].concat();
        assert!(matches!(
            read(&long).await.0,
            Err(ProxyError::Malformed(_)) | Err(ProxyError::Io(_))
        ));
        assert!(matches!(
            read(b"USER anonymous\r\n").await.0,
            Err(ProxyError::Missing)
        ));
        assert!(matches!(
            read(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\x00")
                .await
                .0,
            Err(ProxyError::Missing)
        ));
        assert!(matches!(read(b"PROXY").await.0, Err(ProxyError::Io(_))));
    }

    fn v2(command: u8, family: u8, body: &[u8]) -> Vec<u8> {
        let mut bytes = V2_SIGNATURE.to_vec();
        bytes.push(0x20 | command);
        bytes.push(family);
        bytes.extend_from_slice(&(body.len() as u16).to_be_bytes());
        bytes.extend_from_slice(body);
        bytes
    }

    #[tokio::test]
    async fn version_2_ipv4_ipv6_local_and_tlvs() {
        let mut body = vec![203, 0, 113, 7, 192, 0, 2, 1];
        body.extend_from_slice(&51234u16.to_be_bytes());
        body.extend_from_slice(&2121u16.to_be_bytes());
        body.extend_from_slice(&[0x04, 0x00, 0x02, 0xAA, 0xBB]); // a TLV, skipped
        let mut bytes = v2(1, 0x11, &body);
        bytes.extend_from_slice(b"\x16rest");
        let (header, rest) = read(&bytes).await;
        let header = header.unwrap();
        assert_eq!(header.source, Some("203.0.113.7:51234".parse().unwrap()));
        assert_eq!(header.destination, Some("192.0.2.1:2121".parse().unwrap()));
        assert_eq!(rest, b"\x16rest");

        let mut body = Vec::new();
        body.extend_from_slice(&"2001:db8::7".parse::<Ipv6Addr>().unwrap().octets());
        body.extend_from_slice(&"2001:db8::1".parse::<Ipv6Addr>().unwrap().octets());
        body.extend_from_slice(&[0, 80, 0, 21]);
        let (header, _) = read(&v2(1, 0x21, &body)).await;
        assert_eq!(
            header.unwrap().source,
            Some("[2001:db8::7]:80".parse().unwrap())
        );

        let (header, _) = read(&v2(0, 0x00, &[])).await;
        assert_eq!(header.unwrap(), ProxyHeader::EMPTY);
    }

    #[tokio::test]
    async fn version_2_garbage_is_refused() {
        // Cut-short addresses, a bad command, a wrong version, an oversized body.
        assert!(read(&v2(1, 0x11, &[1, 2, 3])).await.0.is_err());
        assert!(read(&v2(5, 0x11, &[0; 12])).await.0.is_err());
        let mut wrong_version = v2(1, 0x11, &[0; 12]);
        wrong_version[12] = 0x11;
        assert!(read(&wrong_version).await.0.is_err());
        let mut huge = V2_SIGNATURE.to_vec();
        huge.extend_from_slice(&[0x21, 0x11, 0xFF, 0xFF]);
        assert!(matches!(read(&huge).await.0, Err(ProxyError::Malformed(_))));
        // A body shorter than its declared length.
        let mut short = v2(1, 0x11, &[0; 12]);
        short.truncate(20);
        assert!(matches!(read(&short).await.0, Err(ProxyError::Io(_))));
    }

    #[test]
    fn first_bytes() {
        assert!(starts_header(b'P'));
        assert!(starts_header(0x0D));
        assert!(!starts_header(0x16));
    }
}

#[cfg(test)]
#[path = "proxy_props.rs"]
mod props;
