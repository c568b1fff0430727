//! The instance's network, over rtnetlink: `lo` up, the device named by
//! `ip=` up with its address and default route. The device appears when
//! its driver probes (after virtio_net is loaded): a socket subscribed to
//! link events is opened before the modules load, so its arrival is an
//! event, never a guess with sleeps.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use netlink_packet_core::{
    NetlinkMessage, NetlinkPayload, NLM_F_ACK, NLM_F_CREATE, NLM_F_DUMP, NLM_F_EXCL, NLM_F_REQUEST,
};
use netlink_packet_route::address::{AddressAttribute, AddressMessage, AddressScope};
use netlink_packet_route::link::{LinkAttribute, LinkFlags, LinkMessage};
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteHeader, RouteMessage, RouteProtocol, RouteScope, RouteType,
};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use netlink_sys::protocols::NETLINK_ROUTE;
use netlink_sys::{Socket, SocketAddr};

use super::cmdline::IpConfig;
use super::InitError;

/// `RTMGRP_LINK`: new and removed links.
const RTMGRP_LINK: u32 = 1;

/// Configures links; the real one speaks rtnetlink, tests record calls.
pub trait Links {
    /// Waits until `device` exists (up to `within`), returns its index.
    fn wait_for(&mut self, device: &str, within: Duration) -> Result<u32, InitError>;
    fn set_up(&mut self, index: u32) -> Result<(), InitError>;
    fn add_address(&mut self, index: u32, ip: IpAddr, prefix_len: u8) -> Result<(), InitError>;
    fn add_default_route(&mut self, index: u32, gateway: IpAddr) -> Result<(), InitError>;
}

/// `lo` and the configured device, as the kernel's own ip= would.
pub fn configure(links: &mut dyn Links, ip: &IpConfig, within: Duration) -> Result<(), InitError> {
    let lo = links.wait_for("lo", within)?;
    links.set_up(lo)?;
    let dev = links.wait_for(&ip.device, within)?;
    links.add_address(dev, IpAddr::V4(ip.address), ip.prefix_len)?;
    links.set_up(dev)?;
    if let Some(gw) = ip.gateway {
        links.add_default_route(dev, IpAddr::V4(gw))?;
    }
    Ok(())
}

pub struct Rtnetlink {
    requests: Socket,
    events: Socket,
    seq: u32,
}

impl Rtnetlink {
    /// Open before the network drivers load, so that no link event is missed.
    pub fn open() -> Result<Self, InitError> {
        let mut requests =
            Socket::new(NETLINK_ROUTE).map_err(InitError::io("opening rtnetlink"))?;
        requests
            .bind_auto()
            .map_err(InitError::io("binding rtnetlink"))?;
        let mut events = Socket::new(NETLINK_ROUTE).map_err(InitError::io("opening rtnetlink"))?;
        events
            .bind(&SocketAddr::new(0, RTMGRP_LINK))
            .map_err(InitError::io("subscribing to link events"))?;
        Ok(Self {
            requests,
            events,
            seq: 0,
        })
    }

    /// Sends `msg` and collects the answers until the ack (or the end of a dump).
    fn request(
        &mut self,
        msg: RouteNetlinkMessage,
        flags: u16,
        what: &str,
    ) -> Result<Vec<RouteNetlinkMessage>, InitError> {
        self.seq += 1;
        let mut req = NetlinkMessage::from(msg);
        req.header.flags = NLM_F_REQUEST | flags;
        req.header.sequence_number = self.seq;
        req.finalize();
        let mut buf = vec![0; req.buffer_len()];
        req.serialize(&mut buf);
        self.requests.send(&buf, 0).map_err(InitError::io(what))?;
        let mut answers = Vec::new();
        loop {
            let (bytes, _) = self
                .requests
                .recv_from_full()
                .map_err(InitError::io(what))?;
            for msg in parse_all(&bytes, what)? {
                if msg.header.sequence_number != self.seq {
                    continue;
                }
                match msg.payload {
                    NetlinkPayload::InnerMessage(m) => answers.push(m),
                    NetlinkPayload::Done(_) => return Ok(answers),
                    NetlinkPayload::Error(e) => {
                        return match e.code {
                            None => Ok(answers),
                            Some(code) => Err(InitError::Io {
                                what: what.to_string(),
                                source: std::io::Error::from_raw_os_error(-code.get()),
                            }),
                        }
                    }
                    _ => {}
                }
            }
        }
    }

    fn find(&mut self, device: &str) -> Result<Option<u32>, InitError> {
        let links = self.request(
            RouteNetlinkMessage::GetLink(LinkMessage::default()),
            NLM_F_DUMP,
            "listing links",
        )?;
        Ok(links.iter().find_map(|m| match m {
            RouteNetlinkMessage::NewLink(l) if link_name(l) == Some(device) => Some(l.header.index),
            _ => None,
        }))
    }
}

fn parse_all(
    mut bytes: &[u8],
    what: &str,
) -> Result<Vec<NetlinkMessage<RouteNetlinkMessage>>, InitError> {
    let mut out = Vec::new();
    while !bytes.is_empty() {
        let msg = NetlinkMessage::<RouteNetlinkMessage>::deserialize(bytes).map_err(|e| {
            InitError::Io {
                what: what.to_string(),
                source: std::io::Error::other(e.to_string()),
            }
        })?;
        // Messages are padded to 4 bytes; a zero length would never advance.
        let step = ((msg.header.length as usize).max(4) + 3) & !3;
        bytes = bytes.get(step..).unwrap_or_default();
        out.push(msg);
    }
    Ok(out)
}

fn link_name(l: &LinkMessage) -> Option<&str> {
    l.attributes.iter().find_map(|a| match a {
        LinkAttribute::IfName(n) => Some(n.as_str()),
        _ => None,
    })
}

impl Links for Rtnetlink {
    fn wait_for(&mut self, device: &str, within: Duration) -> Result<u32, InitError> {
        let deadline = Instant::now() + within;
        // Events that arrived since the socket opened are queued: check the
        // current list once, then only read events.
        if let Some(index) = self.find(device)? {
            return Ok(index);
        }
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(InitError::NoLink(device.to_string(), within));
            }
            set_recv_timeout(&self.events, left)?;
            let bytes = match self.events.recv_from_full() {
                Ok((bytes, _)) => bytes,
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    continue
                }
                Err(e) => return Err(InitError::io("reading link events")(e)),
            };
            for msg in parse_all(&bytes, "reading link events")? {
                if let NetlinkPayload::InnerMessage(RouteNetlinkMessage::NewLink(l)) = msg.payload {
                    if link_name(&l) == Some(device) {
                        return Ok(l.header.index);
                    }
                }
            }
        }
    }

    fn set_up(&mut self, index: u32) -> Result<(), InitError> {
        let mut link = LinkMessage::default();
        link.header.index = index;
        link.header.flags = LinkFlags::Up;
        link.header.change_mask = LinkFlags::Up;
        self.request(
            RouteNetlinkMessage::SetLink(link),
            NLM_F_ACK,
            "setting a link up",
        )?;
        Ok(())
    }

    fn add_address(&mut self, index: u32, ip: IpAddr, prefix_len: u8) -> Result<(), InitError> {
        let mut addr = AddressMessage::default();
        addr.header.family = family(ip);
        addr.header.prefix_len = prefix_len;
        addr.header.scope = AddressScope::Universe;
        addr.header.index = index;
        addr.attributes.push(AddressAttribute::Local(ip));
        addr.attributes.push(AddressAttribute::Address(ip));
        self.request(
            RouteNetlinkMessage::NewAddress(addr),
            NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL,
            "adding the address",
        )?;
        Ok(())
    }

    fn add_default_route(&mut self, index: u32, gateway: IpAddr) -> Result<(), InitError> {
        let mut route = RouteMessage::default();
        route.header.address_family = family(gateway);
        route.header.table = RouteHeader::RT_TABLE_MAIN;
        route.header.protocol = RouteProtocol::Boot;
        route.header.scope = RouteScope::Universe;
        route.header.kind = RouteType::Unicast;
        route
            .attributes
            .push(RouteAttribute::Gateway(RouteAddress::from(gateway)));
        route.attributes.push(RouteAttribute::Oif(index));
        self.request(
            RouteNetlinkMessage::NewRoute(route),
            NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL,
            "adding the default route",
        )?;
        Ok(())
    }
}

fn family(ip: IpAddr) -> AddressFamily {
    match ip {
        IpAddr::V4(_) => AddressFamily::Inet,
        IpAddr::V6(_) => AddressFamily::Inet6,
    }
}

fn set_recv_timeout(socket: &Socket, within: Duration) -> Result<(), InitError> {
    use std::os::fd::AsRawFd;
    let tv = libc::timeval {
        tv_sec: within.as_secs().min(i64::MAX as u64) as libc::time_t,
        tv_usec: within.subsec_micros().max(1) as libc::suseconds_t,
    };
    // SAFETY: setsockopt on an open socket with a timeval that lives for the call.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVTIMEO,
            (&tv as *const libc::timeval).cast(),
            std::mem::size_of::<libc::timeval>() as libc::socklen_t,
        )
    };
    if rc < 0 {
        return Err(InitError::io("setting a timeout on link events")(
            std::io::Error::last_os_error(),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    #[derive(Default)]
    struct Recorder(Vec<String>);
    impl Links for Recorder {
        fn wait_for(&mut self, device: &str, _: Duration) -> Result<u32, InitError> {
            self.0.push(format!("wait {device}"));
            Ok(if device == "lo" { 1 } else { 2 })
        }
        fn set_up(&mut self, index: u32) -> Result<(), InitError> {
            self.0.push(format!("up {index}"));
            Ok(())
        }
        fn add_address(&mut self, index: u32, ip: IpAddr, p: u8) -> Result<(), InitError> {
            self.0.push(format!("addr {index} {ip}/{p}"));
            Ok(())
        }
        fn add_default_route(&mut self, index: u32, gw: IpAddr) -> Result<(), InitError> {
            self.0.push(format!("route {index} via {gw}"));
            Ok(())
        }
    }

    #[test]
    fn loopback_then_the_device_with_address_and_route() {
        let mut r = Recorder::default();
        let ip = IpConfig {
            address: Ipv4Addr::new(10, 9, 0, 2),
            gateway: Some(Ipv4Addr::new(10, 9, 0, 1)),
            prefix_len: 24,
            hostname: "i".into(),
            device: "eth0".into(),
        };
        configure(&mut r, &ip, Duration::from_secs(1)).expect("configures");
        assert_eq!(
            r.0,
            [
                "wait lo",
                "up 1",
                "wait eth0",
                "addr 2 10.9.0.2/24",
                "up 2",
                "route 2 via 10.9.0.1"
            ]
        );
    }
}
