//! A simulated Amazon Time Sync Service: an SNTP server (RFC 5905 mode 4) on
//! a UDP socket whose clock, stratum, leap indicator, kiss-o'-death code,
//! losses, delay and misbehaviour ([`Hostile`]) are set by an [`NtpSpec`]
//! that can change while it runs.
//!
//! Packets are built by hand (sntpc is client-only); the layout is RFC 5905
//! §7.3 Figure 8: 48 bytes, big-endian, timestamps in 32.32 fixed point
//! seconds since 1900 modulo 2^32 (the era is not on the wire, §6).

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::net::UdpSocket;
use tokio::task::JoinSet;

/// Seconds from the NTP prime epoch (1900-01-01) to the Unix epoch (RFC 5905 §6).
pub const NTP_UNIX_OFFSET_SECONDS: u64 = 2_208_988_800;
/// How far ahead [`Hostile::Era2036`] runs the server clock: 2^30 s (about 34
/// years), which puts its timestamps in NTP era 1 (after 2036-02-07T06:28:16Z)
/// for any real time after 2002, yet within the ±68 years that RFC 5905 §6
/// wrapping arithmetic resolves.
pub const ERA_2036_SHIFT_SECONDS: f64 = 1_073_741_824.0;
/// Bogus packets [`Hostile::Flood`] sends before each real reply.
pub const FLOOD_PACKETS: u64 = 5;
/// Bogus packets [`Hostile::Storm`] sends before each real reply.
pub const STORM_PACKETS: u64 = 2_000;
/// [`Hostile::Storm`] sends its packets in bursts of this many, a millisecond apart,
/// so the loopback socket buffer (a few hundred datagrams) is not what drops them.
const STORM_BURST: u64 = 50;
/// How far from the truth the spoofed replies of [`Hostile::Storm`] put the server clock.
pub const STORM_SPOOFED_OFFSET_SECONDS: f64 = 1_000.0;

const PACKET_LEN: usize = 48;
const MODE_CLIENT: u8 = 3;
const MODE_SERVER: u8 = 4;
/// log2 seconds; -20 is about 1 µs.
const PRECISION: i8 = -20;

/// Ways the simulated server misbehaves, one per client validation check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hostile {
    /// Replies are cut to 40 bytes.
    ShortPacket,
    /// Replies carry an origin timestamp that is not the request's transmit timestamp.
    WrongOrigin,
    /// Replies are in client mode (3) instead of server mode (4).
    ClientMode,
    /// Replies have a zero transmit timestamp.
    ZeroTransmit,
    /// The server clock runs [`ERA_2036_SHIFT_SECONDS`] ahead, so its timestamps are in NTP era 1.
    Era2036,
    /// Before each real reply, [`FLOOD_PACKETS`] unsolicited bogus packets: a
    /// valid-looking reply from another port, a reply and a DENY kiss-o'-death
    /// with wrong origins, a reflected client packet, and a short packet.
    Flood,
    /// Before each real reply, a sustained flood of [`STORM_PACKETS`] unsolicited
    /// packets: replies with wrong origins, DENY kisses, short packets, and
    /// replies with the right origin but a clock [`STORM_SPOOFED_OFFSET_SECONDS`]
    /// off, sent from another port.
    Storm,
}

/// Behaviour of the simulated NTP server.
#[derive(Debug, Clone, PartialEq)]
pub struct NtpSpec {
    /// Server clock = this host's clock + `offset_seconds`.
    pub offset_seconds: f64,
    /// Stratum in replies (1-15 valid; 16 unsynchronized).
    pub stratum: u8,
    /// Leap indicator in replies (3: alarm, clock unsynchronized).
    pub leap: u8,
    /// Reference ID in replies (an IPv4 address from stratum 2 on).
    pub reference_id: [u8; 4],
    /// Answer with a kiss-o'-death: stratum 0 and this code as reference ID (RFC 5905 §7.4).
    pub kiss_code: Option<[u8; 4]>,
    /// Drop every n-th request (1: drop all).
    pub drop_every: Option<u64>,
    /// Round-trip network delay added to each reply, half before and half after the server timestamps it.
    pub delay: Duration,
    /// Root delay in replies.
    pub root_delay_seconds: f64,
    /// Root dispersion in replies.
    pub root_dispersion_seconds: f64,
    /// Misbehaviour, if any.
    pub hostile: Option<Hostile>,
}

impl Default for NtpSpec {
    /// A healthy Amazon Time Sync Service lookalike: stratum 3, no leap, small root distance.
    fn default() -> Self {
        Self {
            offset_seconds: 0.0,
            stratum: 3,
            leap: 0,
            reference_id: [169, 254, 169, 123],
            kiss_code: None,
            drop_every: None,
            delay: Duration::ZERO,
            root_delay_seconds: 0.000_2,
            root_dispersion_seconds: 0.000_5,
            hostile: None,
        }
    }
}

/// Serves SNTP on `socket` until `shutdown` completes; `requests` counts every
/// datagram received, dropped or not. Changes to `spec` apply to the next request.
pub async fn serve(socket: UdpSocket, spec: Arc<Mutex<NtpSpec>>, requests: Arc<AtomicU64>, shutdown: impl Future<Output = ()>) {
    let socket = Arc::new(socket);
    let mut replies = JoinSet::new();
    tokio::pin!(shutdown);
    let mut buf = [0u8; 512];
    loop {
        let (len, peer) = tokio::select! {
            () = &mut shutdown => break,
            r = socket.recv_from(&mut buf) => match r {
                Ok(r) => r,
                Err(e) => {
                    tracing::debug!(error = %e, "simulated NTP receive failed");
                    continue;
                }
            },
            Some(_) = replies.join_next(), if !replies.is_empty() => continue,
        };
        let n = requests.fetch_add(1, Ordering::SeqCst) + 1;
        let spec = spec.lock().expect("sim ntp lock").clone();
        let Some(request) = Request::parse(&buf[..len]) else { continue };
        if spec.drop_every.is_some_and(|k| k > 0 && n.is_multiple_of(k)) {
            continue;
        }
        replies.spawn(reply(socket.clone(), peer, request, spec));
    }
    replies.shutdown().await;
}

/// The fields of a client request the server echoes.
#[derive(Debug, Clone, Copy)]
struct Request {
    version: u8,
    poll: u8,
    transmit: u64,
}

impl Request {
    fn parse(b: &[u8]) -> Option<Self> {
        let head = *b.first()?;
        (b.len() >= PACKET_LEN && head & 0x7 == MODE_CLIENT).then(|| Self {
            version: (head >> 3) & 0x7,
            poll: b[2],
            transmit: u64::from_be_bytes(b[40..48].try_into().unwrap_or_default()),
        })
    }
}

async fn reply(socket: Arc<UdpSocket>, peer: SocketAddr, req: Request, spec: NtpSpec) {
    let half = spec.delay / 2;
    tokio::time::sleep(half).await;
    let shift = spec.offset_seconds + if spec.hostile == Some(Hostile::Era2036) { ERA_2036_SHIFT_SECONDS } else { 0.0 };
    let received = server_time(shift);
    let mut packet = Packet {
        leap: spec.leap,
        version: req.version,
        mode: MODE_SERVER,
        stratum: spec.stratum,
        poll: req.poll,
        root_delay: short_format(spec.root_delay_seconds),
        root_dispersion: short_format(spec.root_dispersion_seconds),
        reference_id: spec.reference_id,
        reference: received.wrapping_sub(16 << 32),
        origin: req.transmit,
        receive: received,
        transmit: server_time(shift),
    };
    if let Some(code) = spec.kiss_code {
        // RFC 5905 §7.4: stratum 0, the code in the reference ID; ntpd also sets LI 3.
        (packet.stratum, packet.reference_id, packet.leap) = (0, code, 3);
    }
    let mut bytes = packet.encode().to_vec();
    match spec.hostile {
        Some(Hostile::ShortPacket) => bytes.truncate(40),
        Some(Hostile::WrongOrigin) => bytes[24..32].copy_from_slice(&req.transmit.wrapping_add(0x1_0000_0000).to_be_bytes()),
        Some(Hostile::ClientMode) => bytes[0] = (bytes[0] & !0x7) | MODE_CLIENT,
        Some(Hostile::ZeroTransmit) => bytes[40..48].fill(0),
        Some(Hostile::Flood) => flood(&socket, peer, &packet).await,
        Some(Hostile::Storm) => storm(&socket, peer, &packet).await,
        Some(Hostile::Era2036) | None => {}
    }
    tokio::time::sleep(half).await;
    if let Err(e) = socket.send_to(&bytes, peer).await {
        tracing::debug!(error = %e, "simulated NTP send failed");
    }
}

/// Unsolicited packets a client must ignore while it waits for the real reply.
async fn flood(socket: &UdpSocket, peer: SocketAddr, real: &Packet) {
    let wrong = Packet { origin: fastrand::u64(..), ..*real };
    let deny = Packet { stratum: 0, leap: 3, reference_id: *b"DENY", ..wrong };
    let reflected = Packet { mode: MODE_CLIENT, ..wrong };
    // A reply with the right origin but from another port: only the source address betrays it.
    if let Ok(local) = socket.local_addr()
        && let Ok(other) = UdpSocket::bind(SocketAddr::new(local.ip(), 0)).await
    {
        let _ = other.send_to(&real.encode(), peer).await;
    }
    for bytes in [wrong.encode().to_vec(), deny.encode().to_vec(), reflected.encode().to_vec(), vec![0x24; 20]] {
        let _ = socket.send_to(&bytes, peer).await;
    }
    // Let the bogus packets land before the real reply, so a test can count them all.
    tokio::time::sleep(Duration::from_millis(1)).await;
}

/// A sustained flood of packets a client must ignore, in bursts.
async fn storm(socket: &UdpSocket, peer: SocketAddr, real: &Packet) {
    let other = match socket.local_addr() {
        Ok(local) => UdpSocket::bind(SocketAddr::new(local.ip(), 0)).await.ok(),
        Err(_) => None,
    };
    let ahead = (STORM_SPOOFED_OFFSET_SECONDS * 4_294_967_296.0) as u64;
    let spoofed = Packet { receive: real.receive.wrapping_add(ahead), transmit: real.transmit.wrapping_add(ahead), ..*real };
    for i in 0..STORM_PACKETS {
        let wrong = Packet { origin: fastrand::u64(..), ..*real };
        let result = match i % 4 {
            0 => socket.send_to(&wrong.encode(), peer).await,
            1 => socket.send_to(&Packet { stratum: 0, leap: 3, reference_id: *b"DENY", ..wrong }.encode(), peer).await,
            2 => socket.send_to(&wrong.encode()[..fastrand::usize(..PACKET_LEN)], peer).await,
            _ => match &other {
                Some(other) => other.send_to(&spoofed.encode(), peer).await,
                None => socket.send_to(&wrong.encode(), peer).await,
            },
        };
        if result.is_err() {
            return;
        }
        if i % STORM_BURST == STORM_BURST - 1 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
    tokio::time::sleep(Duration::from_millis(1)).await;
}

/// An NTP header (RFC 5905 §7.3 Figure 8).
#[derive(Debug, Clone, Copy, PartialEq)]
struct Packet {
    leap: u8,
    version: u8,
    mode: u8,
    stratum: u8,
    poll: u8,
    root_delay: u32,
    root_dispersion: u32,
    reference_id: [u8; 4],
    reference: u64,
    origin: u64,
    receive: u64,
    transmit: u64,
}

impl Packet {
    fn encode(&self) -> [u8; PACKET_LEN] {
        let mut b = [0u8; PACKET_LEN];
        b[0] = (self.leap & 0x3) << 6 | (self.version & 0x7) << 3 | (self.mode & 0x7);
        b[1] = self.stratum;
        b[2] = self.poll;
        b[3] = PRECISION.to_be_bytes()[0];
        b[4..8].copy_from_slice(&self.root_delay.to_be_bytes());
        b[8..12].copy_from_slice(&self.root_dispersion.to_be_bytes());
        b[12..16].copy_from_slice(&self.reference_id);
        b[16..24].copy_from_slice(&self.reference.to_be_bytes());
        b[24..32].copy_from_slice(&self.origin.to_be_bytes());
        b[32..40].copy_from_slice(&self.receive.to_be_bytes());
        b[40..48].copy_from_slice(&self.transmit.to_be_bytes());
        b
    }
}

/// This host's clock shifted by `shift_seconds`, as an NTP timestamp.
fn server_time(shift_seconds: f64) -> u64 {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    ntp_timestamp(now.as_nanos() as i128 + (shift_seconds * 1e9) as i128)
}

/// Unix time in nanoseconds -> NTP 32.32 timestamp. The seconds are taken
/// modulo 2^32: 2036-02-07T06:28:16Z is 0 again, the start of era 1 (RFC 5905 §6).
pub fn ntp_timestamp(unix_nanos: i128) -> u64 {
    let ntp_nanos = unix_nanos + i128::from(NTP_UNIX_OFFSET_SECONDS) * 1_000_000_000;
    let seconds = ntp_nanos.div_euclid(1_000_000_000).rem_euclid(1 << 32) as u64;
    let fraction = ((ntp_nanos.rem_euclid(1_000_000_000) << 32) / 1_000_000_000) as u64;
    seconds << 32 | fraction
}

/// Seconds -> NTP short format (16.16 fixed point), saturating.
fn short_format(seconds: f64) -> u32 {
    (seconds * 65_536.0).clamp(0.0, f64::from(u32::MAX)) as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_wrap_into_era_1_in_2036() {
        let s = 1_000_000_000i128;
        let cases = [
            (0, NTP_UNIX_OFFSET_SECONDS << 32),
            (2_085_978_495 * s, 0xffff_ffff_0000_0000),
            (2_085_978_496 * s, 0), // 2036-02-07T06:28:16Z: era 1 begins
            (2_085_978_497 * s + s / 2, 0x0000_0001_8000_0000),
            (-(NTP_UNIX_OFFSET_SECONDS as i128) * s, 0), // 1900: era 0 begins
        ];
        for (unix_nanos, want) in cases {
            assert_eq!(ntp_timestamp(unix_nanos), want, "{unix_nanos}");
        }
    }

    #[test]
    fn short_format_saturates() {
        assert_eq!(short_format(1.5), 0x0001_8000);
        assert_eq!(short_format(-1.0), 0);
        assert_eq!(short_format(1e9), u32::MAX);
    }

    #[test]
    fn requests_must_be_full_client_packets() {
        let mut b = [0u8; 48];
        b[0] = 0x23; // LI 0, VN 4, mode 3
        b[40..48].copy_from_slice(&7u64.to_be_bytes());
        let r = Request::parse(&b).expect("client packet");
        assert_eq!((r.version, r.transmit), (4, 7));
        assert!(Request::parse(&b[..47]).is_none());
        assert!(Request::parse(&[]).is_none());
        b[0] = 0x24; // mode 4: a server reply, not a request
        assert!(Request::parse(&b).is_none());
    }

    #[test]
    fn packet_layout_matches_rfc_5905_figure_8() {
        let p = Packet {
            leap: 3,
            version: 4,
            mode: 4,
            stratum: 0,
            poll: 6,
            root_delay: 1,
            root_dispersion: 2,
            reference_id: *b"RATE",
            reference: 3,
            origin: 4,
            receive: 5,
            transmit: 6,
        };
        let b = p.encode();
        assert_eq!(b[0], 0b11_100_100);
        assert_eq!(&b[12..16], b"RATE");
        assert_eq!(b[3] as i8, PRECISION);
        assert_eq!(u64::from_be_bytes(b[24..32].try_into().unwrap()), 4);
        assert_eq!(u64::from_be_bytes(b[40..48].try_into().unwrap()), 6);
    }

    #[tokio::test]
    async fn serves_counts_drops_and_stops() {
        let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = socket.local_addr().unwrap();
        let spec = Arc::new(Mutex::new(NtpSpec { drop_every: Some(2), ..NtpSpec::default() }));
        let requests = Arc::new(AtomicU64::new(0));
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(serve(socket, spec, requests.clone(), async {
            let _ = stopped.await;
        }));
        let client = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let mut req = [0u8; 48];
        req[0] = 0x23;
        req[40..48].copy_from_slice(&0xdead_beef_u64.to_be_bytes());
        let mut buf = [0u8; 64];
        let mut answered = 0;
        for _ in 0..2 {
            client.send_to(&req, addr).await.unwrap();
            if let Ok(Ok((n, _))) = tokio::time::timeout(Duration::from_millis(200), client.recv_from(&mut buf)).await {
                assert_eq!(n, 48);
                assert_eq!(buf[0] & 0x7, MODE_SERVER);
                assert_eq!(u64::from_be_bytes(buf[24..32].try_into().unwrap()), 0xdead_beef);
                answered += 1;
            }
        }
        assert_eq!((answered, requests.load(Ordering::SeqCst)), (1, 2), "the second request is dropped");
        stop.send(()).unwrap();
        tokio::time::timeout(Duration::from_secs(1), server).await.expect("serve stops").unwrap();
    }
}
