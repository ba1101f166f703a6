//! The delivery worker: sends the outbox's due deliveries to their webhooks, signed as
//! Standard Webhooks, and schedules retries.
//!
//! Every control-plane process runs one worker. It claims due deliveries with a lease
//! ([`Store::claim_deliveries`]; safe with several replicas on PostgreSQL), sends each with a
//! timeout and without following redirects, records the attempt and either marks the delivery
//! succeeded (2xx), schedules the next attempt (exponential backoff with jitter), or marks it
//! dead when the retry period is over. A process that dies mid-send leaves its claims to expire
//! (the lease), after which any worker sends them again: delivery is at least once.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use rand::RngExt;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use tokio::sync::{Notify, Semaphore};
use tokio::task::JoinSet;
use tracing::Instrument;
use wharf_core::{Event, EventPayload, EventType};

use crate::options::ControlPlaneOptions;
use crate::store::events::later;
use crate::store::{AttemptOutcome, AttemptRecord, ClaimedDelivery, DeliveryStatus, Store};
use crate::webhooks::sign;

/// Deliveries sent at the same time by one worker.
const CONCURRENCY: usize = 16;
/// How long a claim lasts beyond the send timeout.
const LEASE_MARGIN: Duration = Duration::from_secs(30);

/// Whether deliveries to `ip` are refused when private targets are denied.
pub fn is_private_target(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_private_v4(v4),
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_private_v4(v4);
            }
            let first = v6.segments()[0];
            v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (first & 0xfe00) == 0xfc00 // unique local fc00::/7
                || (first & 0xffc0) == 0xfe80 // link-local fe80::/10
                || (first & 0xffc0) == 0xfec0 // site-local fec0::/10 (deprecated)
                || is_nat64_private(v6)
        }
    }
}

fn is_private_v4(ip: Ipv4Addr) -> bool {
    let [a, b, ..] = ip.octets();
    ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_unspecified()
        || ip.is_broadcast()
        || ip.is_multicast()
        || a == 0 // "this network"
        || (a == 100 && (64..128).contains(&b)) // carrier-grade NAT 100.64/10
        || (a == 192 && b == 0 && ip.octets()[2] == 0) // IETF protocol assignments
        || (a == 198 && (b == 18 || b == 19)) // benchmarking
        || a >= 240 // reserved
}

/// `64:ff9b::a.b.c.d` reaches `a.b.c.d` through NAT64.
fn is_nat64_private(ip: Ipv6Addr) -> bool {
    let s = ip.segments();
    if s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        let [a, b] = s[6].to_be_bytes();
        let [c, d] = s[7].to_be_bytes();
        return is_private_v4(Ipv4Addr::new(a, b, c, d));
    }
    false
}

/// Why a webhook URL is refused by the private-target rule, if it is (an IP literal or a
/// `localhost` name; other names are checked on every delivery, after resolving).
pub fn private_target_reason(url: &url::Url) -> Option<String> {
    match url.host()? {
        url::Host::Ipv4(ip) if is_private_target(IpAddr::V4(ip)) => Some(format!(
            "{ip} is a private, loopback or link-local address, which this control plane does \
             not deliver to"
        )),
        url::Host::Ipv6(ip) if is_private_target(IpAddr::V6(ip)) => Some(format!(
            "{ip} is a private, loopback or link-local address, which this control plane does \
             not deliver to"
        )),
        url::Host::Domain(name) => {
            let name = name.trim_end_matches('.').to_ascii_lowercase();
            (name == "localhost" || name.ends_with(".localhost")).then(|| {
                format!("{name} is the local machine, which this control plane does not deliver to")
            })
        }
        _ => None,
    }
}

/// A resolver that drops private addresses (DNS rebinding cannot reach inside).
struct PublicOnlyResolver;

impl Resolve for PublicOnlyResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0))
                .await?
                .filter(|a| !is_private_target(a.ip()))
                .collect();
            if addrs.is_empty() {
                return Err(format!(
                    "{host} resolves only to private, loopback or link-local addresses, which \
                     this control plane does not deliver to"
                )
                .into());
            }
            Ok(Box::new(addrs.into_iter()) as Addrs)
        })
    }
}

/// The HTTP client of deliveries: timeout, no redirects, no proxies from the environment, and
/// private addresses refused unless allowed.
pub fn http_client(options: &ControlPlaneOptions) -> Result<reqwest::Client, reqwest::Error> {
    let mut builder = reqwest::Client::builder()
        .timeout(options.webhook_timeout)
        .connect_timeout(options.webhook_timeout)
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .user_agent(concat!("Wharf-Webhooks/", env!("CARGO_PKG_VERSION")));
    if !options.allow_private_webhook_targets {
        builder = builder.dns_resolver(PublicOnlyResolver);
    }
    builder.build()
}

/// The request body of a delivery: the event as [`wharf_core::Event`] (a test event has the
/// same shape with its own `type` and `data`).
fn payload(delivery: &ClaimedDelivery) -> Result<Vec<u8>, String> {
    let data: serde_json::Value = serde_json::from_str(&delivery.data)
        .map_err(|e| format!("the stored event data is unreadable: {e}"))?;
    let value = match EventType::parse(&delivery.event_type) {
        Some(event_type) => {
            let data: EventPayload = serde_json::from_value(data)
                .map_err(|e| format!("the stored event data is unreadable: {e}"))?;
            serde_json::to_value(Event {
                id: delivery.event_id.clone(),
                event_type,
                time: delivery.event_time,
                data,
            })
            .map_err(|e| e.to_string())?
        }
        None => serde_json::json!({
            "id": delivery.event_id,
            "type": delivery.event_type,
            "time": delivery.event_time,
            "data": data,
        }),
    };
    serde_json::to_vec(&value).map_err(|e| e.to_string())
}

/// An error with its causes: "error sending request: … : connection refused".
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut message = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !message.contains(&text) {
            message.push_str(": ");
            message.push_str(&text);
        }
        source = cause.source();
    }
    message
}

/// Sends deliveries; one per control-plane process.
pub(crate) struct Worker {
    pub store: Store,
    pub options: ControlPlaneOptions,
    pub http: reqwest::Client,
    /// Woken when this process records an event with deliveries.
    pub wake: Arc<Notify>,
    /// This worker's id; its claims are `<id>:<n>`.
    pub id: String,
    /// The number of the next claim.
    pub claims: std::sync::atomic::AtomicU64,
}

impl Worker {
    /// Runs until aborted.
    pub async fn run(self: Arc<Self>) {
        let slots = Arc::new(Semaphore::new(CONCURRENCY));
        let mut sending = JoinSet::new();
        loop {
            let free = slots.available_permits();
            let mut claimed = Vec::new();
            if free > 0 {
                let now = crate::store::now();
                let lease = later(now, self.options.webhook_timeout + LEASE_MARGIN);
                let n = self
                    .claims
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let token = format!("{}:{n}", self.id);
                match self
                    .store
                    .claim_deliveries(&token, now, lease, free as u32)
                    .await
                {
                    Ok(c) => claimed = c.into_iter().map(|d| (token.clone(), d)).collect(),
                    Err(e) => tracing::warn!(error = %e, "cannot claim webhook deliveries"),
                }
            }
            let got = claimed.len();
            for (token, delivery) in claimed {
                let Ok(permit) = slots.clone().acquire_owned().await else {
                    return;
                };
                let worker = self.clone();
                let span = tracing::info_span!("webhook_delivery", delivery = %delivery.id,
                    webhook = %delivery.webhook_id, event = %delivery.event_id);
                sending.spawn(
                    async move {
                        worker.deliver(&token, delivery).await;
                        drop(permit);
                    }
                    .instrument(span),
                );
            }
            if got > 0 && got == free {
                // There may be more due: claim again as soon as a slot frees up.
                if let Some(Err(e)) = sending.join_next().await
                    && e.is_panic()
                {
                    tracing::error!("a webhook delivery panicked");
                }
                continue;
            }
            tokio::select! {
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(self.options.delivery_poll_interval) => {}
                Some(_) = sending.join_next(), if !sending.is_empty() => {}
            }
        }
    }

    /// One attempt at `delivery`, recorded.
    async fn deliver(&self, token: &str, delivery: ClaimedDelivery) {
        let attempt = self.attempt(&delivery).await;
        let succeeded = attempt.status_code.is_some_and(|c| (200..300).contains(&c));
        let now = crate::store::now();
        let (status, next_attempt_at) = if succeeded {
            (DeliveryStatus::Succeeded, now)
        } else {
            let round = delivery.round_attempts.saturating_add(1);
            let next = later(now, jitter(self.options.retry.delay_after(round)));
            if next > delivery.give_up_at {
                (DeliveryStatus::Dead, now)
            } else {
                (DeliveryStatus::Pending, next)
            }
        };
        match status {
            DeliveryStatus::Succeeded => {
                tracing::info!(status = ?attempt.status_code, latency_ms = attempt.latency_ms, "webhook delivered")
            }
            DeliveryStatus::Pending => {
                tracing::info!(status = ?attempt.status_code, error = ?attempt.error,
                    next_attempt_at = %next_attempt_at, "webhook delivery failed; will retry")
            }
            DeliveryStatus::Dead => {
                tracing::warn!(status = ?attempt.status_code, error = ?attempt.error,
                    "webhook delivery failed for the whole retry period; it is dead")
            }
        }
        let outcome = AttemptOutcome {
            attempt,
            status,
            next_attempt_at,
        };
        if let Err(e) = self
            .store
            .finish_attempt(token, &delivery.id, &outcome)
            .await
        {
            // The claim expires and the delivery is sent again: at least once.
            tracing::error!(error = %e, "cannot record a webhook delivery attempt");
        }
    }

    async fn attempt(&self, delivery: &ClaimedDelivery) -> AttemptRecord {
        let time = crate::store::now();
        let started = Instant::now();
        let result = self.send(delivery).await;
        let latency_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        let (status_code, error) = match result {
            Ok((code, None)) => (Some(code), None),
            Ok((code, Some(body))) => (Some(code), Some(body)),
            Err(error) => (None, Some(error)),
        };
        AttemptRecord {
            time,
            status_code,
            latency_ms,
            error,
        }
    }

    /// POSTs the delivery: the status code, and an error text for a non-2xx answer.
    async fn send(&self, delivery: &ClaimedDelivery) -> Result<(u16, Option<String>), String> {
        let url = url::Url::parse(&delivery.url).map_err(|e| format!("bad URL: {e}"))?;
        if !self.options.allow_private_webhook_targets
            && let Some(reason) = private_target_reason(&url)
        {
            return Err(reason);
        }
        let body = payload(delivery)?;
        let timestamp = Utc::now().timestamp();
        let secret = delivery.secret.as_deref().map_err(Clone::clone)?;
        let signature =
            sign(secret, &delivery.event_id, timestamp, &body).map_err(|e| e.to_string())?;
        let response = self
            .http
            .post(url)
            .header("webhook-id", &delivery.event_id)
            .header("webhook-timestamp", timestamp.to_string())
            .header("webhook-signature", signature)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body)
            .send()
            .await
            // Without the URL, which may carry a token.
            .map_err(|e| error_chain(&e.without_url()))?;
        let status = response.status();
        if status.is_success() {
            return Ok((status.as_u16(), None));
        }
        // The receiver's answer is never read: what it says (a proxy's error page, an internal
        // service's reply) is not for whoever reads deliveries through the API.
        let error = if status.is_redirection() {
            format!("HTTP {status} (redirects are not followed)")
        } else {
            format!("HTTP {status}")
        };
        Ok((status.as_u16(), Some(error)))
    }
}

/// A random wait between half and all of `delay`.
fn jitter(delay: Duration) -> Duration {
    let millis = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX);
    if millis < 2 {
        return delay;
    }
    Duration::from_millis(rand::rng().random_range(millis / 2..=millis))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_ranges() {
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "0.0.0.0",
            "100.64.0.1",
            "::1",
            "::",
            "fd00::1",
            "fe80::1",
            "::ffff:127.0.0.1",
            "64:ff9b::a9fe:a9fe",
        ] {
            assert!(is_private_target(ip.parse().unwrap()), "{ip}");
        }
        for ip in ["93.184.216.34", "8.8.8.8", "2606:4700::1111", "100.128.0.1"] {
            assert!(!is_private_target(ip.parse().unwrap()), "{ip}");
        }
    }

    #[test]
    fn private_urls() {
        let reason = |u: &str| private_target_reason(&url::Url::parse(u).unwrap());
        assert!(reason("http://127.0.0.1:8080/x").is_some());
        assert!(reason("http://[::1]/x").is_some());
        assert!(reason("http://localhost/x").is_some());
        assert!(reason("http://api.localhost./x").is_some());
        assert!(reason("https://example.com/x").is_none());
        assert!(reason("https://8.8.8.8/x").is_none());
    }

    #[test]
    fn jitter_stays_within_half_and_all() {
        for _ in 0..100 {
            let d = jitter(Duration::from_secs(10));
            assert!(d >= Duration::from_secs(5) && d <= Duration::from_secs(10));
        }
    }
}
