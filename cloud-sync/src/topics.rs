//! The topic layout of the protocol (PROTOCOL.md): `roomgate/v1/{site}/{gateway}/{channel}`.

use std::fmt;

/// The topic prefix of protocol version 1.
pub const PREFIX: &str = "roomgate/v1";

/// A channel under a gateway's subtree.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Channel {
    Events,
    Status,
    Telemetry,
    Sync,
    Acks,
    Bookings,
    Commands,
}

impl Channel {
    pub const ALL: [Channel; 7] = [
        Channel::Events,
        Channel::Status,
        Channel::Telemetry,
        Channel::Sync,
        Channel::Acks,
        Channel::Bookings,
        Channel::Commands,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Channel::Events => "events",
            Channel::Status => "status",
            Channel::Telemetry => "telemetry",
            Channel::Sync => "sync",
            Channel::Acks => "acks",
            Channel::Bookings => "bookings",
            Channel::Commands => "commands",
        }
    }

    /// Whether the gateway publishes on it (else the hub does).
    pub fn upward(self) -> bool {
        matches!(
            self,
            Channel::Events | Channel::Status | Channel::Telemetry | Channel::Sync
        )
    }
}

/// A gateway's identity: its site and its id. The client certificate's CN and the MQTT
/// username are `{site}/{gateway}`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct GatewayId {
    site: String,
    gateway: String,
}

/// An id that cannot be used in a topic.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("'{0}' is not a valid site or gateway id: use 1 to 64 of a-z, 0-9 and '-'")]
pub struct BadId(pub String);

fn valid(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

impl GatewayId {
    pub fn new(site: &str, gateway: &str) -> Result<GatewayId, BadId> {
        for s in [site, gateway] {
            if !valid(s) {
                return Err(BadId(s.to_owned()));
            }
        }
        Ok(GatewayId {
            site: site.to_owned(),
            gateway: gateway.to_owned(),
        })
    }

    pub fn site(&self) -> &str {
        &self.site
    }

    pub fn gateway(&self) -> &str {
        &self.gateway
    }

    /// The topic of one of this gateway's channels.
    pub fn topic(&self, channel: Channel) -> String {
        format!("{PREFIX}/{}/{}/{}", self.site, self.gateway, channel.name())
    }

    /// The MQTT client id.
    pub fn client_id(&self) -> String {
        format!("gw-{}-{}", self.site, self.gateway)
    }

    /// Parses a topic into the gateway and channel it belongs to.
    pub fn parse(topic: &str) -> Option<(GatewayId, Channel)> {
        let rest = topic.strip_prefix(PREFIX)?.strip_prefix('/')?;
        let mut parts = rest.split('/');
        let (site, gateway, channel) = (parts.next()?, parts.next()?, parts.next()?);
        if parts.next().is_some() {
            return None;
        }
        let channel = Channel::ALL.into_iter().find(|c| c.name() == channel)?;
        Some((GatewayId::new(site, gateway).ok()?, channel))
    }
}

impl fmt::Display for GatewayId {
    /// `{site}/{gateway}`: the certificate identity and the MQTT username.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.site, self.gateway)
    }
}

/// What hub replicas subscribe to: every gateway's upward channels, shared in `group`.
pub fn hub_subscriptions(group: &str) -> Vec<String> {
    [
        Channel::Events,
        Channel::Status,
        Channel::Telemetry,
        Channel::Sync,
    ]
    .into_iter()
    .map(|c| format!("$share/{group}/{PREFIX}/+/+/{}", c.name()))
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topics_follow_the_layout_and_parse_back() {
        let id = GatewayId::new("hq", "floor-3").expect("valid");
        assert_eq!(id.topic(Channel::Events), "roomgate/v1/hq/floor-3/events");
        assert_eq!(id.to_string(), "hq/floor-3");
        assert_eq!(id.client_id(), "gw-hq-floor-3");
        assert_eq!(
            GatewayId::parse("roomgate/v1/hq/floor-3/acks"),
            Some((id, Channel::Acks))
        );
        assert_eq!(GatewayId::parse("roomgate/v1/hq/floor-3/acks/x"), None);
        assert_eq!(GatewayId::parse("roomgate/v2/hq/floor-3/acks"), None);
        assert_eq!(GatewayId::parse("roomgate/v1/HQ/floor-3/acks"), None);
        assert!(GatewayId::new("hq", "a/b").is_err());
        assert!(GatewayId::new("", "x").is_err());
        assert_eq!(
            hub_subscriptions("hub")[0],
            "$share/hub/roomgate/v1/+/+/events"
        );
    }
}
