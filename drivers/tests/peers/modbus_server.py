"""An independent Modbus peer for the interop tests: pymodbus 3.16 as a Modbus TCP server or an RTU server on a serial port (a socat pty).

Usage: modbus_server.py tcp            -> prints "PORT <n>" once listening on 127.0.0.1:<n>
       modbus_server.py rtu PATH BAUD  -> prints "READY" once the port is open

Every device id (TCP: 1; RTU: 1 and 2) holds the same map, encoded here with Python's struct
module (independently of the Rust codec):

  coils 0..7               1,0,1,0,0,0,0,1
  discrete inputs 0..7     0,1,1,0,0,0,0,0
  holding 0                1234
  holding 1..2    f32 21.5          ABCD
  holding 3..4    u32 0x11223344    CDAB
  holding 5..6    u32 0x11223344    BADC
  holding 7..8    i32 -2            DCBA
  holding 10..13  u64 0x0012_3456_789A_BCDE  ABCDEFGH
  holding 14..17  f64 -1234.5       GHEFCDAB
  holding 18      i16 -300  (scaled 0.1 -> -30.0)
  holding 19..29  0
  input 0..9      100 + address

Commands on stdin, one per line, each answered with one JSON line on stdout:
  get DEV FC ADDR COUNT        -> [values]   (FC 1 coils, 2 discrete inputs, 3 holding, 4 input)
  set DEV FC ADDR V1,V2,...    -> "ok"
"""

import asyncio
import json
import struct
import sys
import threading

from pymodbus.framer import FramerType
from pymodbus.server import ModbusSerialServer, ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice


def words(fmt, value, order):
    """Registers of a value packed big-endian, rearranged into one of the layouts."""
    raw = struct.pack(">" + fmt, value)
    pairs = [raw[i : i + 2] for i in range(0, len(raw), 2)]
    if order in ("CDAB", "DCBA"):
        pairs.reverse()
    if order in ("BADC", "DCBA"):
        pairs = [p[::-1] for p in pairs]
    return [int.from_bytes(p, "big") for p in pairs]


def holding():
    regs = [0] * 30
    regs[0] = 1234
    regs[1:3] = words("f", 21.5, "ABCD")
    regs[3:5] = words("I", 0x11223344, "CDAB")
    regs[5:7] = words("I", 0x11223344, "BADC")
    regs[7:9] = words("i", -2, "DCBA")
    regs[10:14] = words("Q", 0x0012_3456_789A_BCDE, "ABCD")
    regs[14:18] = words("d", -1234.5, "CDAB")
    regs[18] = words("h", -300, "ABCD")[0]
    return regs


def device(dev_id):
    coils = [SimData(0, values=[True, False, True, False, False, False, False, True], datatype=DataType.BITS)]
    inputs = [SimData(0, values=[False, True, True, False, False, False, False, False], datatype=DataType.BITS)]
    hr = [SimData(0, values=holding(), datatype=DataType.REGISTERS)]
    ir = [SimData(0, values=[100 + a for a in range(10)], datatype=DataType.REGISTERS)]
    return SimDevice(dev_id, simdata=(coils, inputs, hr, ir))


def say(obj):
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def commands(loop, server):
    for line in sys.stdin:
        parts = line.split()
        if not parts:
            continue
        try:
            dev, fc, addr = int(parts[1]), int(parts[2]), int(parts[3])
            if parts[0] == "get":
                fut = asyncio.run_coroutine_threadsafe(
                    server.async_getValues(dev, fc, addr, int(parts[4])), loop
                )
                say([int(v) for v in fut.result(5)])
            elif parts[0] == "set":
                values = [int(v) for v in parts[4].split(",")]
                if fc in (1, 2):
                    values = [bool(v) for v in values]
                fut = asyncio.run_coroutine_threadsafe(
                    server.async_setValues(dev, fc, addr, values), loop
                )
                fut.result(5)
                say("ok")
            else:
                say({"error": "unknown command"})
        except Exception as exc:  # report, keep serving
            say({"error": repr(exc)})
    loop.call_soon_threadsafe(loop.stop)


async def main():
    if sys.argv[1] == "tcp":
        server = ModbusTcpServer([device(1)], address=("127.0.0.1", 0))
        await server.serve_forever(background=True)
        port = server.transport.sockets[0].getsockname()[1]
        say(f"PORT {port}")
    else:
        server = ModbusSerialServer(
            [device(1), device(2)],
            framer=FramerType.RTU,
            port=sys.argv[2],
            baudrate=int(sys.argv[3]),
            bytesize=8,
            parity="N",
            stopbits=1,
        )
        await server.serve_forever(background=True)
        say("READY")
    loop = asyncio.get_running_loop()
    threading.Thread(target=commands, args=(loop, server), daemon=True).start()
    await asyncio.Event().wait()


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except (KeyboardInterrupt, RuntimeError):
        pass
