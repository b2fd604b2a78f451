//! Admission limits: what a connection and a request must get past before
//! any handler runs, so that clients without a key (device ids are public
//! in the transparency log) cannot tie the server up.
//!
//! - **Connections** ([`ConnectionLimits`], an acceptor that runs on the
//!   TCP stream before TLS): at most `max_connections` open in total and
//!   `max_connections_per_ip` from one address; a connection over either is
//!   closed at once. Its permits live inside the stream ([`Admitted`]), so
//!   they are given back when the connection closes, however it closes.
//!   The TLS handshake, each request head and each idle gap between
//!   requests are timed out by the server (see [`crate::server`]).
//! - **Requests** ([`admit`], middleware): at most `max_requests_per_ip`
//!   in flight from one address (one more is answered 429 at once) and
//!   `max_concurrent_requests` in flight in all; a request waits at most
//!   [`MAX_SLOT_WAIT`] for a slot and is then shed with 503. Both answers
//!   carry `Retry-After`. The request time-out is applied outside this
//!   middleware, so it bounds the wait for a slot as well as the handler.
//!
//! Addresses are counted as IPv4 addresses and IPv6 /64 prefixes (one
//! host commonly holds a whole /64).
//!
//! Hand-written rather than tower's layers: tower has no limit keyed by
//! address, and its `ConcurrencyLimit` waits for a slot in `poll_ready`,
//! which no time-out layer can bound (tower's and tower-http's `Timeout`
//! start their clock in `call`).

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::io;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::HeaderValue;
use axum::http::header::RETRY_AFTER;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum_server::accept::Accept;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::error::AppError;

/// Longest a request waits for one of the `max_concurrent_requests` slots
/// before it is shed with 503 (the client comes back after a backoff
/// rather than queueing here).
pub const MAX_SLOT_WAIT: Duration = Duration::from_secs(2);

/// The key an address is counted under: IPv4 addresses whole (IPv4-mapped
/// IPv6 addresses as IPv4), IPv6 addresses by their /64 prefix.
pub fn address_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(v4) => IpAddr::V4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let prefix = v6.to_bits() & !u128::from(u64::MAX);
                IpAddr::V6(Ipv6Addr::from_bits(prefix))
            }
        },
    }
}

/// Counts what each address holds, up to a limit. Entries exist only
/// while an address holds something, so the map never outgrows what is
/// open at once.
#[derive(Debug)]
pub struct PerAddress {
    limit: usize,
    held: Mutex<HashMap<IpAddr, usize>>,
}

/// One unit held by an address; given back when dropped.
#[derive(Debug)]
pub struct AddressPermit {
    owner: Arc<PerAddress>,
    key: IpAddr,
}

impl PerAddress {
    /// At most `limit` units per address.
    pub fn new(limit: usize) -> Arc<PerAddress> {
        Arc::new(PerAddress {
            limit,
            held: Mutex::new(HashMap::new()),
        })
    }

    /// One more unit for `ip`'s address, unless it holds its limit already.
    pub fn try_acquire(self: &Arc<Self>, ip: IpAddr) -> Option<AddressPermit> {
        let key = address_key(ip);
        // The lock is never held across an `.await`, and nothing in it can
        // panic; a poisoned map is still a consistent map.
        let mut held = self.held.lock().unwrap_or_else(PoisonError::into_inner);
        let count = held.entry(key).or_insert(0);
        if *count >= self.limit {
            return None;
        }
        *count += 1;
        Some(AddressPermit {
            owner: Arc::clone(self),
            key,
        })
    }

    /// What `ip`'s address holds now.
    pub fn held(&self, ip: IpAddr) -> usize {
        let held = self.held.lock().unwrap_or_else(PoisonError::into_inner);
        held.get(&address_key(ip)).copied().unwrap_or(0)
    }
}

impl Drop for AddressPermit {
    fn drop(&mut self) {
        let mut held = self
            .owner
            .held
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Entry::Occupied(mut entry) = held.entry(self.key) {
            *entry.get_mut() = entry.get().saturating_sub(1);
            if *entry.get() == 0 {
                entry.remove();
            }
        }
    }
}

fn semaphore(permits: usize) -> Arc<Semaphore> {
    Arc::new(Semaphore::new(permits.min(Semaphore::MAX_PERMITS)))
}

/// The connection limits, as an axum-server acceptor on the TCP stream.
#[derive(Debug, Clone)]
pub struct ConnectionLimits {
    total: Arc<Semaphore>,
    per_address: Arc<PerAddress>,
}

impl ConnectionLimits {
    /// At most `total` connections open, `per_address` from one address.
    pub fn new(total: usize, per_address: usize) -> ConnectionLimits {
        ConnectionLimits {
            total: semaphore(total),
            per_address: PerAddress::new(per_address),
        }
    }

    fn admit(&self, stream: &TcpStream) -> io::Result<ConnectionPermits> {
        let peer = stream.peer_addr()?;
        let Ok(total) = Arc::clone(&self.total).try_acquire_owned() else {
            tracing::debug!(%peer, "connection refused: the server is at its connection limit");
            return Err(io::Error::other("connection limit reached"));
        };
        let Some(address) = self.per_address.try_acquire(peer.ip()) else {
            tracing::debug!(%peer, "connection refused: the address is at its connection limit");
            return Err(io::Error::other("per-address connection limit reached"));
        };
        Ok(ConnectionPermits {
            _total: total,
            _address: address,
        })
    }
}

impl<S> Accept<TcpStream, S> for ConnectionLimits {
    type Stream = Admitted<TcpStream>;
    type Service = S;
    type Future = std::future::Ready<io::Result<(Self::Stream, S)>>;

    /// Refusing is an error, on which axum-server drops (closes) the stream.
    fn accept(&self, stream: TcpStream, service: S) -> Self::Future {
        std::future::ready(self.admit(&stream).map(|permits| {
            (
                Admitted {
                    inner: stream,
                    _permits: permits,
                },
                service,
            )
        }))
    }
}

#[derive(Debug)]
struct ConnectionPermits {
    _total: OwnedSemaphorePermit,
    _address: AddressPermit,
}

/// An admitted connection's stream: the stream itself, holding its
/// connection permits until it is dropped.
#[derive(Debug)]
pub struct Admitted<T> {
    inner: T,
    _permits: ConnectionPermits,
}

impl<T: AsyncRead + Unpin> AsyncRead for Admitted<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Admitted<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// The request limits, shared by every route (see [`admit`]).
#[derive(Debug, Clone)]
pub struct RequestLimits {
    slots: Arc<Semaphore>,
    per_address: Arc<PerAddress>,
}

impl RequestLimits {
    /// At most `total` requests in flight, `per_address` from one address.
    pub fn new(total: usize, per_address: usize) -> RequestLimits {
        RequestLimits {
            slots: semaphore(total),
            per_address: PerAddress::new(per_address),
        }
    }
}

fn retry_after(error: AppError) -> Response {
    let mut response = error.into_response();
    response
        .headers_mut()
        .insert(RETRY_AFTER, HeaderValue::from_static("1"));
    response
}

/// Middleware: a request runs only holding a slot and a unit of its
/// address's allowance. The address comes from [`ConnectInfo`]; a router
/// driven without one (in-process tests) gets the global limit only.
pub async fn admit(State(limits): State<RequestLimits>, request: Request, next: Next) -> Response {
    let peer = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(addr)| addr.ip());
    let _address = match peer {
        Some(ip) => match limits.per_address.try_acquire(ip) {
            Some(permit) => Some(permit),
            None => {
                return retry_after(AppError::TooManyRequests(
                    "too many requests in flight from this address; retry shortly".into(),
                ));
            }
        },
        None => None,
    };
    let slot = tokio::time::timeout(MAX_SLOT_WAIT, Arc::clone(&limits.slots).acquire_owned());
    let Ok(Ok(_slot)) = slot.await else {
        return retry_after(AppError::Busy("the server is busy; retry shortly".into()));
    };
    next.run(request).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_counted_up_to_their_limit_and_given_back() {
        let limits = PerAddress::new(2);
        let a: IpAddr = "192.0.2.1".parse().expect("ip");
        let b: IpAddr = "192.0.2.2".parse().expect("ip");
        let first = limits.try_acquire(a).expect("first");
        let second = limits.try_acquire(a).expect("second");
        assert!(limits.try_acquire(a).is_none(), "a third is over the limit");
        assert!(limits.try_acquire(b).is_some(), "another address is not");
        drop(first);
        assert_eq!(limits.held(a), 1);
        let again = limits.try_acquire(a).expect("a freed unit is reusable");
        drop((second, again));
        assert_eq!(limits.held(a), 0);
        assert!(
            limits
                .held
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .is_empty(),
            "no entry outlives what it counts"
        );
    }

    #[test]
    fn ipv6_counts_by_64_prefix_and_mapped_ipv4_as_ipv4() {
        let limits = PerAddress::new(1);
        let one: IpAddr = "2001:db8:1:2::1".parse().expect("ip");
        let same_64: IpAddr = "2001:db8:1:2:ffff::9".parse().expect("ip");
        let other_64: IpAddr = "2001:db8:1:3::1".parse().expect("ip");
        let _held = limits.try_acquire(one).expect("first");
        assert!(limits.try_acquire(same_64).is_none());
        assert!(limits.try_acquire(other_64).is_some());

        let v4: IpAddr = "198.51.100.7".parse().expect("ip");
        let mapped: IpAddr = "::ffff:198.51.100.7".parse().expect("ip");
        let _v4 = limits.try_acquire(v4).expect("v4");
        assert!(limits.try_acquire(mapped).is_none());
    }
}
