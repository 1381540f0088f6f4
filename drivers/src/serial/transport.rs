//! How the serial owner task gets its byte stream: the [`SerialTransport`] trait, and [`TtyTransport`] that opens a real serial port (or pty) with tokio-serial.

use std::fmt;
use std::future::Future;
use std::io;

use serde::Deserialize;
use tokio::io::AsyncRead;

/// Opens the byte stream of one serial device; called again after every loss, with backoff.
/// Implement it to run the owner task over any `AsyncRead` (a pipe, a TCP serial server).
pub trait SerialTransport: Send + 'static {
    /// The open stream.
    type Port: AsyncRead + Unpin + Send + 'static;

    /// Opens the stream (the owner task bounds nothing here: opening must not block for long).
    fn open(&mut self) -> impl Future<Output = io::Result<Self::Port>> + Send;

    /// What is opened, for logs and `DeviceHealth::last_error` (e.g. the port path).
    fn describe(&self) -> String;
}

/// Parity bit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Parity {
    #[default]
    None,
    Even,
    Odd,
}

/// Data bits per character.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum DataBits {
    Seven,
    #[default]
    Eight,
}

/// Stop bits per character.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum StopBits {
    #[default]
    One,
    Two,
}

/// Line settings of one serial port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SerialPortConfig {
    /// Device path, e.g. `/dev/ttyUSB0` or a stable `/dev/serial/by-id/...` link.
    pub path: String,
    /// Bits per second.
    pub baud: u32,
    pub parity: Parity,
    pub data_bits: DataBits,
    pub stop_bits: StopBits,
}

impl SerialPortConfig {
    /// 8N1 at `baud`, the usual setting of PIR modules and readers.
    #[must_use]
    pub fn new(path: impl Into<String>, baud: u32) -> Self {
        SerialPortConfig {
            path: path.into(),
            baud,
            parity: Parity::None,
            data_bits: DataBits::Eight,
            stop_bits: StopBits::One,
        }
    }
}

impl fmt::Display for SerialPortConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parity = match self.parity {
            Parity::None => 'N',
            Parity::Even => 'E',
            Parity::Odd => 'O',
        };
        let data = match self.data_bits {
            DataBits::Seven => 7,
            DataBits::Eight => 8,
        };
        let stop = match self.stop_bits {
            StopBits::One => 1,
            StopBits::Two => 2,
        };
        write!(f, "{} ({} {data}{parity}{stop})", self.path, self.baud)
    }
}

/// A real serial port (USB adapter, UART, pty) opened with tokio-serial, no flow control.
#[derive(Debug, Clone)]
pub struct TtyTransport {
    port: SerialPortConfig,
}

impl TtyTransport {
    #[must_use]
    pub fn new(port: SerialPortConfig) -> Self {
        TtyTransport { port }
    }
}

impl SerialTransport for TtyTransport {
    type Port = tokio_serial::SerialStream;

    fn open(&mut self) -> impl Future<Output = io::Result<Self::Port>> + Send {
        let builder = tokio_serial::new(&self.port.path, self.port.baud)
            .parity(match self.port.parity {
                Parity::None => tokio_serial::Parity::None,
                Parity::Even => tokio_serial::Parity::Even,
                Parity::Odd => tokio_serial::Parity::Odd,
            })
            .data_bits(match self.port.data_bits {
                DataBits::Seven => tokio_serial::DataBits::Seven,
                DataBits::Eight => tokio_serial::DataBits::Eight,
            })
            .stop_bits(match self.port.stop_bits {
                StopBits::One => tokio_serial::StopBits::One,
                StopBits::Two => tokio_serial::StopBits::Two,
            })
            .flow_control(tokio_serial::FlowControl::None);
        // Opening registers the fd with the runtime: it runs inside the owner task.
        async move { tokio_serial::SerialStream::open(&builder).map_err(io::Error::from) }
    }

    fn describe(&self) -> String {
        self.port.path.clone()
    }
}
