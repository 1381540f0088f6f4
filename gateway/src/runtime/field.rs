//! The running field side: the owner task of every device, RS-485 bus and the BACnet network,
//! started whole at boot and in parts by a site reload (`FieldParts`).

use std::collections::{BTreeMap, BTreeSet, HashMap};

use drivers::bacnet::{BacnetNetwork, BacnetNetworkConfig};
use drivers::device::{CredentialRead, DeviceHandle, PointUpdate};
use drivers::modbus::rtu::{RtuBus, RtuUnitConfig, spawn_rtu_bus};
use drivers::modbus::tcp::{TcpDeviceConfig, spawn_tcp_device};
use drivers::serial::spawn_serial_device;
use tokio::sync::mpsc;

use super::StartError;
use crate::site::{DeviceKind, PointProtocol, Site};

/// Which owners to start or stop: devices with their own owner task (Modbus TCP, BACnet,
/// serial) by id, RS-485 buses by id (each with all its RTU units), and the BACnet network.
/// RTU unit ids in `devices` are ignored: a unit starts and stops with its bus.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct FieldParts {
    pub devices: BTreeSet<String>,
    pub buses: BTreeSet<String>,
    pub bacnet_network: bool,
}

impl FieldParts {
    /// Every owner a site needs.
    pub fn all(site: &Site) -> FieldParts {
        FieldParts {
            devices: (site.devices.iter())
                .filter(|d| !matches!(d.kind, DeviceKind::ModbusRtu { .. }))
                .map(|d| d.id.clone())
                .collect(),
            buses: site.buses.iter().map(|b| b.id.clone()).collect(),
            bacnet_network: site
                .devices
                .iter()
                .any(|d| matches!(d.kind, DeviceKind::Bacnet(_))),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.devices.is_empty() && self.buses.is_empty() && !self.bacnet_network
    }
}

/// A handle per device, and the buses and network that own shared links (an RS-485 line, the
/// BACnet socket).
#[derive(Debug, Default)]
pub(crate) struct Field {
    pub devices: HashMap<String, DeviceHandle>,
    /// Running buses by id.
    pub buses: BTreeMap<String, RtuBus>,
    pub bacnet: Option<BacnetNetwork>,
}

/// Where a started device sends what it reads.
#[derive(Debug, Clone)]
pub(crate) struct FieldOutputs {
    pub updates: mpsc::Sender<PointUpdate>,
    pub credentials: mpsc::Sender<CredentialRead>,
}

impl Field {
    /// Starts every owner of `site`.
    pub async fn start(site: &Site, outputs: &FieldOutputs) -> Result<Field, StartError> {
        let mut field = Field::default();
        field
            .start_parts(site, &FieldParts::all(site), outputs)
            .await?;
        Ok(field)
    }

    /// Starts `parts` as `site` describes them; returns the ids of the devices started (RTU
    /// units included). On an error the parts started so far keep running: the caller stops
    /// them with the same `parts`.
    pub async fn start_parts(
        &mut self,
        site: &Site,
        parts: &FieldParts,
        outputs: &FieldOutputs,
    ) -> Result<Vec<String>, StartError> {
        let mut started = Vec::new();
        if parts.bacnet_network && self.bacnet.is_none() {
            let net = site
                .bacnet
                .clone()
                .unwrap_or_else(|| BacnetNetworkConfig::new(std::net::Ipv4Addr::UNSPECIFIED));
            self.bacnet = Some(BacnetNetwork::start(net).await?);
        }
        for d in site
            .devices
            .iter()
            .filter(|d| parts.devices.contains(&d.id))
        {
            let handle = match &d.kind {
                DeviceKind::ModbusTcp {
                    addr,
                    unit,
                    poll,
                    timeout,
                } => {
                    let mut cfg = TcpDeviceConfig::new(d.id.clone(), *addr, *unit);
                    cfg.poll_interval = *poll;
                    cfg.request_timeout = *timeout;
                    let points = (d.points.iter())
                        .filter_map(|p| match &p.protocol {
                            PointProtocol::Modbus(m) => Some(m.clone()),
                            _ => None,
                        })
                        .collect();
                    spawn_tcp_device(cfg, points, outputs.updates.clone())
                }
                DeviceKind::ModbusRtu { .. } => continue,
                DeviceKind::Bacnet(cfg) => {
                    if self.bacnet.is_none() {
                        let net = site.bacnet.clone().unwrap_or_else(|| {
                            BacnetNetworkConfig::new(std::net::Ipv4Addr::UNSPECIFIED)
                        });
                        self.bacnet = Some(BacnetNetwork::start(net).await?);
                    }
                    let Some(net) = &self.bacnet else { continue };
                    let points = (d.points.iter())
                        .filter_map(|p| match &p.protocol {
                            PointProtocol::Bacnet(b) => Some(b.clone()),
                            _ => None,
                        })
                        .collect();
                    net.spawn_device(cfg.clone(), points, outputs.updates.clone())
                }
                DeviceKind::Serial(cfg) => spawn_serial_device(
                    cfg.clone(),
                    outputs.updates.clone(),
                    outputs.credentials.clone(),
                ),
            };
            if let Some(old) = self.devices.insert(d.id.clone(), handle) {
                old.shutdown();
            }
            started.push(d.id.clone());
        }
        for bus in site.buses.iter().filter(|b| parts.buses.contains(&b.id)) {
            let units: Vec<RtuUnitConfig> = (site.devices.iter())
                .filter_map(|d| match &d.kind {
                    DeviceKind::ModbusRtu { bus: b, unit } if *b == bus.id => Some(unit.clone()),
                    _ => None,
                })
                .collect();
            if units.is_empty() {
                continue; // a line with no units has nothing to poll
            }
            let running = spawn_rtu_bus(bus.config.clone(), units, outputs.updates.clone())?;
            for handle in running.handles() {
                self.devices
                    .insert(handle.device().to_owned(), handle.clone());
                started.push(handle.device().to_owned());
            }
            if let Some(old) = self.buses.insert(bus.id.clone(), running) {
                old.shutdown();
            }
        }
        Ok(started)
    }

    /// Stops `parts` (whatever of them runs); returns the ids of the devices stopped (RTU
    /// units of stopped buses included). The BACnet network stops after its devices.
    pub async fn stop_parts(&mut self, parts: &FieldParts) -> Vec<String> {
        let mut stopped = Vec::new();
        for id in &parts.devices {
            if let Some(h) = self.devices.remove(id) {
                h.shutdown();
                stopped.push(id.clone());
            }
        }
        for id in &parts.buses {
            if let Some(bus) = self.buses.remove(id) {
                for h in bus.handles() {
                    self.devices.remove(h.device());
                    stopped.push(h.device().to_owned());
                }
                bus.shutdown();
            }
        }
        if parts.bacnet_network
            && let Some(net) = self.bacnet.take()
        {
            net.stop().await;
        }
        stopped
    }

    /// Stops everything.
    pub async fn stop(self) {
        for d in self.devices.values() {
            d.shutdown();
        }
        for b in self.buses.values() {
            b.shutdown();
        }
        if let Some(net) = self.bacnet {
            net.stop().await;
        }
    }
}
