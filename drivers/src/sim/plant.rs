//! The simulated device itself: register banks per kind, Modbus request handling and physics, with no I/O and no clock (time comes in as `dt`).
//!
//! Deliberately independent of `crate::modbus::codec`: floats are packed here by hand so that a
//! bug in the driver's codec cannot be mirrored by the simulator it is tested against.

use std::collections::VecDeque;
use std::time::Duration;

use tokio_modbus::{ExceptionCode, Request, Response};

use super::{SimKind, SimRequest, SimWrite};
use crate::point::ModbusTable;

/// Oldest entries of the request log are dropped beyond this many.
const REQUEST_LOG_CAP: usize = 4096;
/// Oldest entries of the write log are dropped beyond this many.
const WRITE_LOG_CAP: usize = 65_536;

/// Curtain travel speed, % of full travel per second.
const CURTAIN_SPEED: f64 = 10.0;
/// Room temperature drift towards the setpoint, °C per second, while the HVAC power is on.
const HVAC_DRIFT: f64 = 0.1;
/// Initial HVAC setpoint, °C.
const HVAC_SETPOINT: f32 = 21.0;
/// Initial room temperature, °C.
const HVAC_ROOM_TEMPERATURE: f64 = 24.0;
/// Outdoor-air CO2 level, ppm.
const CO2_BASELINE: u16 = 420;

#[derive(Debug)]
pub(crate) struct Plant {
    kind: SimKind,
    pub(crate) coils: Vec<bool>,
    pub(crate) discrete_inputs: Vec<bool>,
    pub(crate) holding: Vec<u16>,
    pub(crate) input: Vec<u16>,
    /// Curtain position with sub-percent precision (input register 0 shows it rounded).
    curtain_position: f64,
    /// Room temperature in full precision (input registers 0..=1 show it as f32).
    temperature: f64,
    writes: VecDeque<SimWrite>,
    requests: VecDeque<SimRequest>,
}

fn f32_words(value: f32) -> [u16; 2] {
    let bits = value.to_bits();
    [(bits >> 16) as u16, (bits & 0xffff) as u16]
}

fn words_f32(high: u16, low: u16) -> f32 {
    f32::from_bits((u32::from(high) << 16) | u32::from(low))
}

impl Plant {
    pub(crate) fn new(kind: SimKind) -> Plant {
        let (coils, discrete_inputs, holding, input) = match kind {
            SimKind::LightModule => (4, 0, 4, 0),
            SimKind::SocketModule => (4, 0, 0, 0),
            SimKind::CurtainMotor => (0, 1, 1, 1),
            SimKind::HvacController => (1, 0, 3, 3),
            SimKind::PirInput => (0, 8, 0, 0),
            SimKind::StatusLight => (0, 0, 1, 0),
        };
        let mut plant = Plant {
            kind,
            coils: vec![false; coils],
            discrete_inputs: vec![false; discrete_inputs],
            holding: vec![0; holding],
            input: vec![0; input],
            curtain_position: 0.0,
            temperature: HVAC_ROOM_TEMPERATURE,
            writes: VecDeque::new(),
            requests: VecDeque::new(),
        };
        if kind == SimKind::HvacController {
            let [high, low] = f32_words(HVAC_SETPOINT);
            plant.holding[1] = high;
            plant.holding[2] = low;
            plant.input[2] = CO2_BASELINE;
        }
        plant.show_state();
        plant
    }

    pub(crate) fn writes(&self) -> Vec<SimWrite> {
        self.writes.iter().cloned().collect()
    }

    pub(crate) fn requests(&self) -> Vec<SimRequest> {
        self.requests.iter().copied().collect()
    }

    /// Records a request in the request log (every request received, answered or not).
    pub(crate) fn log_request(&mut self, request: &Request<'_>) {
        use Request::*;
        let (address, count) = match request {
            ReadCoils(a, n)
            | ReadDiscreteInputs(a, n)
            | ReadHoldingRegisters(a, n)
            | ReadInputRegisters(a, n) => (*a, *n),
            WriteSingleCoil(a, _) | WriteSingleRegister(a, _) | MaskWriteRegister(a, _, _) => {
                (*a, 1)
            }
            WriteMultipleCoils(a, v) => (*a, u16::try_from(v.len()).unwrap_or(u16::MAX)),
            WriteMultipleRegisters(a, v) => (*a, u16::try_from(v.len()).unwrap_or(u16::MAX)),
            ReadWriteMultipleRegisters(a, n, _, _) => (*a, *n),
            _ => (0, 0),
        };
        if self.requests.len() == REQUEST_LOG_CAP {
            self.requests.pop_front();
        }
        self.requests.push_back(SimRequest {
            function: request.function_code().value(),
            address,
            count,
        });
    }

    /// Answers one Modbus request, applying writes. Exception 01 for function codes the device
    /// does not implement, 02 for addresses outside its map, 03 for bad quantities or values.
    pub(crate) fn handle(&mut self, request: &Request<'_>) -> Result<Response, ExceptionCode> {
        match request {
            // FC01 read coils
            Request::ReadCoils(a, n) => {
                read_range(&self.coils, *a, *n, 2000).map(|v| Response::ReadCoils(v.to_vec()))
            }
            // FC02 read discrete inputs
            Request::ReadDiscreteInputs(a, n) => read_range(&self.discrete_inputs, *a, *n, 2000)
                .map(|v| Response::ReadDiscreteInputs(v.to_vec())),
            // FC03 read holding registers
            Request::ReadHoldingRegisters(a, n) => read_range(&self.holding, *a, *n, 125)
                .map(|v| Response::ReadHoldingRegisters(v.to_vec())),
            // FC04 read input registers
            Request::ReadInputRegisters(a, n) => read_range(&self.input, *a, *n, 125)
                .map(|v| Response::ReadInputRegisters(v.to_vec())),
            // FC05 write single coil
            Request::WriteSingleCoil(a, on) => {
                self.write_coils(*a, &[*on])?;
                Ok(Response::WriteSingleCoil(*a, *on))
            }
            // FC15 write multiple coils
            Request::WriteMultipleCoils(a, values) => {
                if values.is_empty() || values.len() > 1968 {
                    return Err(ExceptionCode::IllegalDataValue);
                }
                self.write_coils(*a, values)?;
                Ok(Response::WriteMultipleCoils(*a, values.len() as u16))
            }
            // FC06 write single register
            Request::WriteSingleRegister(a, word) => {
                self.write_holding(*a, &[*word])?;
                Ok(Response::WriteSingleRegister(*a, *word))
            }
            // FC16 write multiple registers
            Request::WriteMultipleRegisters(a, words) => {
                if words.is_empty() || words.len() > 123 {
                    return Err(ExceptionCode::IllegalDataValue);
                }
                self.write_holding(*a, words)?;
                Ok(Response::WriteMultipleRegisters(*a, words.len() as u16))
            }
            _ => Err(ExceptionCode::IllegalFunction),
        }
    }

    fn write_coils(&mut self, address: u16, values: &[bool]) -> Result<(), ExceptionCode> {
        let range = map_range(self.coils.len(), address, values.len())?;
        self.coils[range].copy_from_slice(values);
        self.log_write(
            ModbusTable::Coil,
            address,
            values.iter().map(|&b| u16::from(b)).collect(),
        );
        self.show_state();
        Ok(())
    }

    fn write_holding(&mut self, address: u16, words: &[u16]) -> Result<(), ExceptionCode> {
        let range = map_range(self.holding.len(), address, words.len())?;
        for (offset, &word) in words.iter().enumerate() {
            if !self.holding_value_allowed(address as usize + offset, word) {
                return Err(ExceptionCode::IllegalDataValue);
            }
        }
        self.holding[range].copy_from_slice(words);
        self.log_write(ModbusTable::HoldingRegister, address, words.to_vec());
        self.show_state();
        Ok(())
    }

    /// Value ranges of the holding registers (what a real device would refuse with exception 03).
    fn holding_value_allowed(&self, address: usize, word: u16) -> bool {
        match (self.kind, address) {
            // Dim level, curtain target: 0..=100 %.
            (SimKind::LightModule, 0..=3) | (SimKind::CurtainMotor, 0) => word <= 100,
            // HVAC mode 0..=4, status light colour 0..=4.
            (SimKind::HvacController, 0) | (SimKind::StatusLight, 0) => word <= 4,
            _ => true,
        }
    }

    fn log_write(&mut self, table: ModbusTable, address: u16, values: Vec<u16>) {
        if self.writes.len() == WRITE_LOG_CAP {
            self.writes.pop_front();
        }
        self.writes.push_back(SimWrite {
            table,
            address,
            values,
        });
    }

    /// Sets an input as the physical world would (a PIR edge, a sensor reading). Returns false
    /// when the address is outside the map.
    pub(crate) fn set_discrete_input(&mut self, address: u16, value: bool) -> bool {
        let Some(slot) = self.discrete_inputs.get_mut(usize::from(address)) else {
            return false;
        };
        *slot = value;
        true
    }

    /// Sets an input register; physics continues from the new reading.
    pub(crate) fn set_input_register(&mut self, address: u16, value: u16) -> bool {
        let Some(slot) = self.input.get_mut(usize::from(address)) else {
            return false;
        };
        *slot = value;
        match (self.kind, address) {
            (SimKind::CurtainMotor, 0) => {
                self.curtain_position = f64::from(value.min(100));
                self.show_state();
            }
            (SimKind::HvacController, 0 | 1) => {
                let reading = words_f32(self.input[0], self.input[1]);
                if reading.is_finite() {
                    self.temperature = f64::from(reading);
                }
            }
            _ => {}
        }
        true
    }

    /// Local operation (a push button on the device): no entry in the write log.
    pub(crate) fn set_coil(&mut self, address: u16, value: bool) -> bool {
        let Some(slot) = self.coils.get_mut(usize::from(address)) else {
            return false;
        };
        *slot = value;
        true
    }

    /// Local operation on a holding register: no range check, no entry in the write log.
    pub(crate) fn set_holding(&mut self, address: u16, value: u16) -> bool {
        let Some(slot) = self.holding.get_mut(usize::from(address)) else {
            return false;
        };
        *slot = value;
        self.show_state();
        true
    }

    /// Advances the physics by `dt`.
    pub(crate) fn tick(&mut self, dt: Duration) {
        let seconds = dt.as_secs_f64();
        match self.kind {
            SimKind::CurtainMotor => {
                let target = f64::from(self.holding[0].min(100));
                let step = CURTAIN_SPEED * seconds;
                let distance = target - self.curtain_position;
                self.curtain_position += distance.clamp(-step, step);
            }
            SimKind::HvacController if self.coils[0] => {
                let setpoint = words_f32(self.holding[1], self.holding[2]);
                if setpoint.is_finite() {
                    let step = HVAC_DRIFT * seconds;
                    let distance = f64::from(setpoint) - self.temperature;
                    self.temperature += distance.clamp(-step, step);
                }
            }
            _ => {}
        }
        self.show_state();
    }

    /// Copies the physical state into the registers the device shows.
    fn show_state(&mut self) {
        match self.kind {
            SimKind::CurtainMotor => {
                let target = f64::from(self.holding[0].min(100));
                self.input[0] = self.curtain_position.round().clamp(0.0, 100.0) as u16;
                self.discrete_inputs[0] = (target - self.curtain_position).abs() > 1e-9;
            }
            SimKind::HvacController => {
                let [high, low] = f32_words(self.temperature as f32);
                self.input[0] = high;
                self.input[1] = low;
            }
            _ => {}
        }
    }
}

/// Index range of `count` items at `address` in a bank of `len`, or exception 02.
fn map_range(
    len: usize,
    address: u16,
    count: usize,
) -> Result<std::ops::Range<usize>, ExceptionCode> {
    let start = usize::from(address);
    let end = start + count;
    if end > len {
        return Err(ExceptionCode::IllegalDataAddress);
    }
    Ok(start..end)
}

/// A read of `count` items at `address`: exception 03 for a quantity outside `1..=max`, 02 for
/// addresses outside the map.
fn read_range<T>(bank: &[T], address: u16, count: u16, max: u16) -> Result<&[T], ExceptionCode> {
    if count == 0 || count > max {
        return Err(ExceptionCode::IllegalDataValue);
    }
    let range = map_range(bank.len(), address, usize::from(count))?;
    Ok(&bank[range])
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::borrow::Cow;

    /// Words of a write request.
    fn words(values: &[u16]) -> Cow<'static, [u16]> {
        Cow::Owned(values.to_vec())
    }

    fn temperature(plant: &Plant) -> f32 {
        words_f32(plant.input[0], plant.input[1])
    }

    #[test]
    fn hvac_starts_at_documented_values() {
        let plant = Plant::new(SimKind::HvacController);
        assert_eq!(plant.holding, vec![0, 0x41a8, 0x0000]); // mode off, 21.0
        assert_eq!(temperature(&plant), 24.0);
        assert_eq!(plant.input[2], 420);
        assert!(!plant.coils[0]);
    }

    #[test]
    fn hvac_drifts_only_while_powered() {
        let mut plant = Plant::new(SimKind::HvacController);
        plant.tick(Duration::from_secs(10));
        assert_eq!(temperature(&plant), 24.0);
        plant.handle(&Request::WriteSingleCoil(0, true)).unwrap();
        plant.tick(Duration::from_secs(10));
        assert!((temperature(&plant) - 23.0).abs() < 1e-4);
        // Never overshoots the setpoint.
        plant.tick(Duration::from_secs(100));
        assert_eq!(temperature(&plant), 21.0);
        // Heating up towards a new setpoint of 22.5.
        let [high, low] = f32_words(22.5);
        plant
            .handle(&Request::WriteMultipleRegisters(1, words(&[high, low])))
            .unwrap();
        plant.tick(Duration::from_secs(5));
        assert!((temperature(&plant) - 21.5).abs() < 1e-4);
    }

    #[test]
    fn hvac_takes_over_a_forced_reading() {
        let mut plant = Plant::new(SimKind::HvacController);
        let [high, low] = f32_words(30.0);
        plant.set_input_register(0, high);
        plant.set_input_register(1, low);
        plant.set_coil(0, true);
        plant.tick(Duration::from_secs(10));
        assert!((temperature(&plant) - 29.0).abs() < 1e-4);
    }

    #[test]
    fn curtain_moves_at_ten_percent_per_second() {
        let mut plant = Plant::new(SimKind::CurtainMotor);
        assert_eq!((plant.input[0], plant.discrete_inputs[0]), (0, false));
        plant.handle(&Request::WriteSingleRegister(0, 50)).unwrap();
        assert!(
            plant.discrete_inputs[0],
            "moving as soon as the target changes"
        );
        plant.tick(Duration::from_millis(2500));
        assert_eq!((plant.input[0], plant.discrete_inputs[0]), (25, true));
        plant.tick(Duration::from_secs(3));
        assert_eq!((plant.input[0], plant.discrete_inputs[0]), (50, false));
        plant.handle(&Request::WriteSingleRegister(0, 0)).unwrap();
        plant.tick(Duration::from_secs(1));
        assert_eq!((plant.input[0], plant.discrete_inputs[0]), (40, true));
        assert_eq!(
            plant.handle(&Request::WriteSingleRegister(0, 101)),
            Err(ExceptionCode::IllegalDataValue)
        );
    }

    #[test]
    fn maps_refuse_out_of_range_addresses_and_unknown_functions() {
        let mut light = Plant::new(SimKind::LightModule);
        assert_eq!(
            light.handle(&Request::ReadCoils(0, 4)),
            Ok(Response::ReadCoils(vec![false; 4]))
        );
        assert_eq!(
            light.handle(&Request::ReadCoils(1, 4)),
            Err(ExceptionCode::IllegalDataAddress)
        );
        assert_eq!(
            light.handle(&Request::ReadDiscreteInputs(0, 1)),
            Err(ExceptionCode::IllegalDataAddress)
        );
        assert_eq!(
            light.handle(&Request::ReadHoldingRegisters(0, 0)),
            Err(ExceptionCode::IllegalDataValue)
        );
        assert_eq!(
            light.handle(&Request::WriteSingleRegister(4, 1)),
            Err(ExceptionCode::IllegalDataAddress)
        );
        assert_eq!(
            light.handle(&Request::MaskWriteRegister(0, 0, 1)),
            Err(ExceptionCode::IllegalFunction)
        );
        assert_eq!(
            light.handle(&Request::WriteMultipleRegisters(2, words(&[10, 20, 30]))),
            Err(ExceptionCode::IllegalDataAddress)
        );
        assert!(light.writes().is_empty(), "refused writes change nothing");
        light
            .handle(&Request::WriteMultipleRegisters(2, words(&[10, 20])))
            .unwrap();
        assert_eq!(light.holding, vec![0, 0, 10, 20]);
        assert_eq!(
            light.writes(),
            vec![SimWrite {
                table: ModbusTable::HoldingRegister,
                address: 2,
                values: vec![10, 20]
            }]
        );
    }
}
