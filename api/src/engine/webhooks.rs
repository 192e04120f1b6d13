//! Outbound webhooks: events written to the outbox with their effect, delivered later with the
//! Standard Webhooks headers, retried with back-off, refused for private addresses.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use persistence::webhooks::{self, AttemptResult, Delivery, NewEvent};
use persistence::{Db, PersistenceError};
use rand::Rng;
use serde_json::{Value, json};
use sha2::Sha256;

use crate::engine::format::ts;

/// The event types an endpoint may subscribe to.
pub const EVENT_TYPES: [&str; 13] = [
    "reward.issued",
    "reward.cancelled",
    "currency.allocated",
    "currency.redeemed",
    "currency.reversed",
    "currency.expired",
    "currency.activated",
    "currency.held",
    "currency.hold_captured",
    "currency.hold_voided",
    "currency.hold_expired",
    "currency.transferred",
    "currency.expiring",
];

/// How deliveries behave.
#[derive(Debug, Clone)]
pub struct WebhookSettings {
    /// Deliver to loopback, private and link-local addresses (`LOYALTY_WEBHOOK_ALLOW_PRIVATE=1`).
    pub allow_private: bool,
    /// The wait before each automatic retry; when it is used up, the event is `FAILED`.
    pub retry_schedule: Vec<Duration>,
    /// How long one delivery may take.
    pub timeout: Duration,
    /// The most endpoints an organisation may have, deleted ones aside
    /// (`LOYALTY_WEBHOOK_MAX_ENDPOINTS`).
    pub max_endpoints: u64,
}

impl Default for WebhookSettings {
    fn default() -> Self {
        Self {
            allow_private: false,
            retry_schedule: [5, 30, 120, 600, 3600, 6 * 3600, 24 * 3600]
                .into_iter()
                .map(Duration::from_secs)
                .collect(),
            timeout: Duration::from_secs(10),
            max_endpoints: 100,
        }
    }
}

/// A retry schedule as given on the command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schedule(pub Vec<Duration>);

/// Parses a schedule such as `5s,30s,2m,10m,1h`.
pub fn parse_schedule(text: &str) -> Result<Schedule, String> {
    text.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| humantime::parse_duration(s).map_err(|e| format!("{s}: {e}")))
        .collect::<Result<Vec<_>, _>>()
        .map(Schedule)
}

/// A fresh endpoint secret: `whsec_` and 24 random bytes in base64 (Standard Webhooks).
pub fn new_secret() -> String {
    let bytes: [u8; 24] = rand::rng().random();
    format!("whsec_{}", BASE64.encode(bytes))
}

/// `v1,<base64 HMAC-SHA256 of "id.timestamp.body">` with the secret's key bytes.
pub fn sign(secret: &str, id: &str, timestamp: i64, body: &str) -> String {
    let key = secret
        .strip_prefix("whsec_")
        .and_then(|k| BASE64.decode(k).ok())
        .unwrap_or_else(|| secret.as_bytes().to_vec());
    // ok: HMAC accepts keys of any length, so new_from_slice cannot fail.
    let mut mac = match Hmac::<Sha256>::new_from_slice(&key) {
        Ok(mac) => mac,
        Err(_) => return String::new(),
    };
    mac.update(format!("{id}.{timestamp}.{body}").as_bytes());
    format!("v1,{}", BASE64.encode(mac.finalize().into_bytes()))
}

/// Whether an address is not one a delivery may go to: loopback, private, link-local, shared,
/// reserved, benchmarking, documentation, multicast, or an IPv6 form that carries or reaches an
/// IPv4 address other than through an ordinary public route (IPv4-compatible, mapped and
/// translated addresses, NAT64 and 6to4 prefixes, Teredo).
fn is_private(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_private_v4(v4),
        IpAddr::V6(v6) => is_private_v6(v6),
    }
}

fn is_private_v4(v4: Ipv4Addr) -> bool {
    let [a, b, c, _] = v4.octets();
    v4.is_loopback()
        || v4.is_private()
        || v4.is_link_local()
        || v4.is_unspecified()
        || v4.is_broadcast()
        || v4.is_multicast()
        // 0.0.0.0/8 "this network", 240.0.0.0/4 reserved.
        || a == 0
        || a >= 240
        // 100.64.0.0/10, carrier-grade NAT.
        || (a == 100 && (b & 0xc0) == 64)
        // 192.0.0.0/24, IETF protocol assignments.
        || (a == 192 && b == 0 && c == 0)
        // 198.18.0.0/15, benchmarking.
        || (a == 198 && (b & 0xfe) == 18)
        // 192.0.2.0/24, 198.51.100.0/24, 203.0.113.0/24, documentation.
        || (a == 192 && b == 0 && c == 2)
        || (a == 198 && b == 51 && c == 100)
        || (a == 203 && b == 0 && c == 113)
        // 192.88.99.0/24, the former 6to4 relay anycast.
        || (a == 192 && b == 88 && c == 99)
}

fn is_private_v6(v6: Ipv6Addr) -> bool {
    let s = v6.segments();
    let low_v4 = || Ipv4Addr::from((u32::from(s[6]) << 16) | u32::from(s[7]));
    v6.is_loopback()
        || v6.is_unspecified()
        || v6.is_multicast()
        // ::/96, IPv4-compatible (deprecated; `::a.b.c.d`), and :: and ::1 with them.
        || s[..6] == [0; 6]
        // ::ffff:0:0/96, IPv4-translated.
        || s[..6] == [0, 0, 0, 0, 0xffff, 0]
        // 64:ff9b::/96, NAT64: the IPv4 address inside decides.
        || (s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] && is_private_v4(low_v4()))
        // 64:ff9b:1::/48, NAT64 for local use.
        || s[..3] == [0x64, 0xff9b, 1]
        // 100::/64, discard only.
        || s[..4] == [0x100, 0, 0, 0]
        // 2001::/23, IETF protocol assignments (Teredo 2001::/32 among them).
        || (s[0] == 0x2001 && s[1] < 0x200)
        // 2001:db8::/32, documentation.
        || (s[0] == 0x2001 && s[1] == 0xdb8)
        // 2002::/16, 6to4: an IPv4 address reached through a relay.
        || s[0] == 0x2002
        // fc00::/7 unique local, fe80::/10 link-local, fec0::/10 site-local.
        || (s[0] & 0xfe00) == 0xfc00
        || (s[0] & 0xffc0) == 0xfe80
        || (s[0] & 0xffc0) == 0xfec0
        || v6.to_ipv4_mapped().is_some_and(is_private_v4)
}

/// Why a URL is refused, if it is: not http(s), or naming a loopback, private or link-local
/// address (directly, as `localhost`, or through DNS). A name that does not resolve now is
/// accepted; every delivery checks again, so a later answer cannot point it inside.
pub async fn refuse_url(url: &str, allow_private: bool) -> Option<String> {
    let parsed = match reqwest::Url::parse(url) {
        Ok(u) => u,
        Err(_) => return Some("must be an absolute http or https URL".into()),
    };
    if !matches!(parsed.scheme(), "http" | "https") {
        return Some("must be an http or https URL".into());
    }
    let Some(host) = parsed.host_str() else {
        return Some("must name a host".into());
    };
    if allow_private {
        return None;
    }
    let private = "resolves to a loopback, private, link-local or reserved address".to_owned();
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if let Ok(ip) = host.parse::<IpAddr>() {
        return is_private(ip).then_some(private);
    }
    if host.eq_ignore_ascii_case("localhost") || host.to_ascii_lowercase().ends_with(".localhost") {
        return Some(private);
    }
    let port = parsed.port_or_known_default().unwrap_or(443);
    let lookup = tokio::time::timeout(
        Duration::from_secs(2),
        tokio::net::lookup_host((host, port)),
    )
    .await;
    match lookup {
        Ok(Ok(addrs)) => addrs
            .into_iter()
            .any(|a| is_private(a.ip()))
            .then_some(private),
        _ => None,
    }
}

/// An event for the outbox: `{"id": token, "type", "createdAt", "data"}`.
pub fn event(event_type: &'static str, data: Value, now: DateTime<Utc>) -> NewEvent<'static> {
    NewEvent {
        event_type,
        body: Box::new(move |token| {
            json!({"id": token, "type": event_type, "createdAt": ts(now), "data": data}).to_string()
        }),
    }
}

/// [`event`] with its `data` already written as JSON text (an object): the same body, built
/// by pasting the text in rather than serialising a tree.
pub fn event_text(event_type: &'static str, data: String, now: DateTime<Utc>) -> NewEvent<'static> {
    let created_at = Value::String(ts(now)).to_string();
    let kind = Value::String(event_type.to_owned()).to_string();
    NewEvent {
        event_type,
        body: Box::new(move |token| {
            // The keys in the order `event`'s map writes them (sorted).
            let token = Value::String(token.to_owned()).to_string();
            let mut body = String::with_capacity(data.len() + token.len() + created_at.len() + 64);
            body.push_str("{\"createdAt\":");
            body.push_str(&created_at);
            body.push_str(",\"data\":");
            body.push_str(&data);
            body.push_str(",\"id\":");
            body.push_str(&token);
            body.push_str(",\"type\":");
            body.push_str(&kind);
            body.push('}');
            body
        }),
    }
}

/// Writes `events` to the outbox in the caller's transaction, one row per subscribed endpoint
/// (the subscriptions from the cache).
pub async fn emit(
    caches: &crate::engine::cache::Caches,
    conn: &persistence::Tx,
    org_id: i64,
    events: Vec<NewEvent<'static>>,
    now: DateTime<Utc>,
) -> Result<usize, PersistenceError> {
    if events.is_empty() {
        return Ok(0);
    }
    let endpoints = caches.endpoints(conn, org_id).await?;
    webhooks::emit_to(conn, &[(org_id, &endpoints, &events)], now).await
}

/// Writes the events of a batch, grouped by organisation, in one statement (subscriptions from
/// the cache).
pub async fn emit_grouped(
    caches: &crate::engine::cache::Caches,
    conn: &persistence::Tx,
    events: &std::collections::BTreeMap<i64, Vec<NewEvent<'static>>>,
    now: DateTime<Utc>,
) -> Result<usize, PersistenceError> {
    let mut endpoints = Vec::with_capacity(events.len());
    for org_id in events.keys() {
        endpoints.push(caches.endpoints(conn, *org_id).await?);
    }
    let outbox: Vec<_> = events
        .iter()
        .zip(&endpoints)
        .map(|((org, ev), ep)| (*org, ep.as_slice(), ev.as_slice()))
        .collect();
    webhooks::emit_to(conn, &outbox, now).await
}

/// At most 1 KiB of a response body, as text without NUL (which PostgreSQL text refuses);
/// the rest is never read.
async fn body_head(mut response: reqwest::Response) -> String {
    let mut head: Vec<u8> = Vec::new();
    while head.len() < 1024 {
        match response.chunk().await {
            Ok(Some(chunk)) => head.extend_from_slice(&chunk[..chunk.len().min(1024 - head.len())]),
            _ => break,
        }
    }
    String::from_utf8_lossy(&head).replace('\0', "")
}

/// Sends one delivery and says what came of it (without touching the database).
async fn attempt(
    client: &reqwest::Client,
    settings: &WebhookSettings,
    d: &Delivery,
    now: DateTime<Utc>,
) -> Result<(i32, String), (Option<i32>, String)> {
    if let Some(reason) = refuse_url(&d.url, settings.allow_private).await {
        return Err((None, format!("not delivered: the endpoint URL {reason}")));
    }
    let timestamp = now.timestamp();
    let id = &d.event.idempotency_token;
    let response = client
        .post(&d.url)
        .timeout(settings.timeout)
        .header("content-type", "application/json")
        .header("webhook-id", id)
        .header("webhook-timestamp", timestamp.to_string())
        .header(
            "webhook-signature",
            sign(&d.secret, id, timestamp, &d.event.body),
        )
        .body(d.event.body.clone())
        .send()
        .await;
    match response {
        Ok(r) => {
            let code = i32::from(r.status().as_u16());
            let success = r.status().is_success();
            let body = body_head(r).await;
            if success {
                Ok((code, body))
            } else {
                Err((Some(code), body))
            }
        }
        Err(e) if e.is_timeout() => Err((None, "timed out".into())),
        Err(_) => Err((None, "the endpoint could not be reached".into())),
    }
}

/// Delivers up to `batch` due events once each, each organisation with due events getting its
/// share (see [`crate::engine::webhook_rounds`]); each attempt is recorded as soon as it ends, and this
/// returns when all have. Returns how many were attempted.
pub async fn deliver_due(
    db: &Db,
    client: &reqwest::Client,
    settings: &WebhookSettings,
    now: DateTime<Utc>,
    batch: u64,
) -> Result<usize, PersistenceError> {
    let batch = usize::try_from(batch).unwrap_or(usize::MAX);
    let deliveries =
        crate::engine::webhook_rounds::claim_shares(db, settings, now, batch, |_| batch, &[])
            .await?;
    futures_util::future::join_all(
        deliveries
            .iter()
            .map(|d| deliver_one(db, client, settings, d, now)),
    )
    .await;
    Ok(deliveries.len())
}

/// How long a claimed event is leased to the worker that claimed it at `now`.
pub(crate) fn lease_until(settings: &WebhookSettings, now: DateTime<Utc>) -> DateTime<Utc> {
    let lease = chrono::Duration::from_std(settings.timeout + Duration::from_secs(30))
        .unwrap_or(chrono::Duration::seconds(60));
    now.checked_add_signed(lease).unwrap_or(now)
}

/// Sends one claimed event and records what came of it (delivered; the next attempt from the
/// retry schedule; or `FAILED`).
pub(crate) async fn deliver_one(
    db: &Db,
    client: &reqwest::Client,
    settings: &WebhookSettings,
    d: &Delivery,
    now: DateTime<Utc>,
) {
    let result = match attempt(client, settings, d, now).await {
        Ok((code, body)) => {
            crate::engine::metrics::webhook("delivered");
            AttemptResult::Delivered { code, body }
        }
        Err((code, body)) => {
            let done = usize::try_from(d.event.attempts).unwrap_or(0);
            let retry_at = settings
                .retry_schedule
                .get(done)
                .and_then(|wait| chrono::Duration::from_std(*wait).ok())
                .and_then(|wait| now.checked_add_signed(wait));
            crate::engine::metrics::webhook(if retry_at.is_some() {
                "retry_scheduled"
            } else {
                "failed"
            });
            AttemptResult::Failed {
                code,
                body,
                retry_at,
            }
        }
    };
    // An event whose attempt cannot be recorded is attempted again when its lease runs out.
    if let Err(e) = webhooks::record_attempt(db.conn(), d.event.seq, &result, now).await {
        tracing::warn!(error = %e, event = %d.event.id, "could not record a webhook attempt");
    }
}

/// Resolves names for deliveries and drops every private address, so the address that was
/// checked is the address connected to (a DNS answer that changes between a check and the
/// connection cannot point a delivery inside).
struct PublicOnly;

impl reqwest::dns::Resolve for PublicOnly {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        Box::pin(async move {
            let addrs = tokio::net::lookup_host((name.as_str(), 0)).await?;
            let public: Vec<std::net::SocketAddr> = addrs.filter(|a| !is_private(a.ip())).collect();
            if public.is_empty() {
                return Err("the name resolves to no public address".into());
            }
            let addrs: reqwest::dns::Addrs = Box::new(public.into_iter());
            Ok(addrs)
        })
    }
}

/// The HTTP client deliveries use: no redirects (a redirect could point inside), no proxy from
/// the environment (`HTTPS_PROXY` and the like: a proxy would resolve the name itself, around
/// the resolver), and unless private addresses are allowed, a resolver that only ever yields
/// public ones.
pub fn client(allow_private: bool) -> reqwest::Client {
    let mut builder = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy();
    if !allow_private {
        builder = builder.dns_resolver(std::sync::Arc::new(PublicOnly));
    }
    // ok: building fails only when the TLS backend cannot start, once at start-up; a default
    // client instead would deliver through proxies and to private addresses.
    builder.build().expect("the webhook delivery client") // ok: see above
}

/// `currency.expired` events for the `EXPIRE` entries just written for `account`.
pub fn expired_events(
    account: &persistence::ledger::Account,
    entries: &[persistence::ledger::EntryRow],
    now: DateTime<Utc>,
) -> Vec<NewEvent<'static>> {
    entries
        .iter()
        .map(|e| {
            event(
                "currency.expired",
                json!({
                    "customerId": account.customer_id.to_string(),
                    "programId": account.program_id,
                    "currency": account.currency,
                    "amount": crate::engine::format::amount(e.amount, e.scale),
                    "balanceAfter": crate::engine::format::amount(e.balance_after, e.scale),
                    "ledgerEntryId": e.id.to_string(),
                    "expiredAt": ts(e.created_at),
                }),
                now,
            )
        })
        .collect()
}

/// The `currency.expiring` notice of a lot: what is left of it and when it expires. `late`
/// when it is written at or after `expiresAt` (the lot expired before a notice round came);
/// the amount is then what expired, if the lot is already emptied.
pub fn expiring_event(
    lot: &persistence::expiring::ExpiringLot,
    now: DateTime<Utc>,
) -> NewEvent<'static> {
    let amount = match lot.expired_amount {
        Some(expired) if lot.remaining == 0 => expired,
        _ => lot.remaining,
    };
    event(
        "currency.expiring",
        json!({
            "customerId": lot.customer_id.to_string(),
            "programId": lot.program_id,
            "currency": lot.currency,
            "amount": crate::engine::format::amount(amount, lot.scale),
            "held": crate::engine::format::amount(lot.held, lot.scale),
            "lotId": lot.id.to_string(),
            "expiresAt": ts(lot.expires_at),
            "late": lot.expires_at <= now,
        }),
        now,
    )
}

#[cfg(test)]
#[path = "webhooks_tests.rs"]
mod tests;
