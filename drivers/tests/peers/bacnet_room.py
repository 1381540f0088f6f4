#!/usr/bin/env python3
"""An independent BACnet/IP room device (bacpypes3 0.0.110) for the driver's interop tests.

Objects: binary-output:1 "light" (commandable), analog-value:1 "setpoint" (commandable,
relinquish default 21.0), analog-input:1 "temperature" (21.5), binary-input:1 "occupancy",
multi-state-value:1 "mode" (3 states). bacpypes3 answers Who-Is, ReadProperty(Multiple),
WriteProperty and SubscribeCOV by itself.

Usage: bacnet_room.py --name room --instance 4001 --address 127.0.47.3/8:47808

Note: bacpypes3 takes any 127.x.x.x address on its own port for itself (ipv4/__init__.py,
"self-addressed"), so a peer on the same host must use another port than the device's.

Prints "ready" on stdout once the device is up, then reads commands on stdin, one per line:
  set temperature 24.5     set the analog input (COV subscribers are notified)
  set occupancy active     set the binary input (active | inactive)
  show setpoint            print {"pv": ..., "pa": [16 slots, null when empty]} as JSON
  quit
"""

import asyncio
import json
import socket
import sys

from bacpypes3.app import Application
from bacpypes3.argparse import SimpleArgumentParser
from bacpypes3.local.analog import AnalogInputObject, AnalogValueObjectCmd
from bacpypes3.local.binary import BinaryInputObject, BinaryOutputObject
from bacpypes3.local.multistate import MultiStateValueObject


def slot_value(slot):
    """A PriorityValue as plain JSON: None for null, else the number / enumeration name."""
    for attr in ("null", "real", "enumerated", "unsigned", "boolean", "integer", "double"):
        value = getattr(slot, attr, None)
        if value is not None:
            return None if attr == "null" else plain(value)
    return str(slot)


def plain(value):
    if isinstance(value, (int, float, bool)):
        return value
    return str(value)


async def bound(address: str) -> None:
    """Waits until bacpypes3 (which binds in a task of its own) holds the unicast socket."""
    host, _, port = address.partition(":")
    host = host.split("/")[0]
    for _ in range(250):
        probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            probe.bind((host, int(port or 47808)))
        except OSError:
            return
        finally:
            probe.close()
        await asyncio.sleep(0.02)
    raise RuntimeError(f"bacpypes3 did not bind {address}")


async def main() -> None:
    args = SimpleArgumentParser().parse_args()
    app = Application.from_args(args)
    objects = {
        "light": BinaryOutputObject(
            objectIdentifier=("binaryOutput", 1),
            objectName="light",
            presentValue="inactive",
            relinquishDefault="inactive",
            statusFlags=[0, 0, 0, 0],
        ),
        "setpoint": AnalogValueObjectCmd(
            objectIdentifier=("analogValue", 1),
            objectName="setpoint",
            presentValue=21.0,
            relinquishDefault=21.0,
            units="degreesCelsius",
            covIncrement=0.1,
            statusFlags=[0, 0, 0, 0],
        ),
        "temperature": AnalogInputObject(
            objectIdentifier=("analogInput", 1),
            objectName="temperature",
            presentValue=21.5,
            units="degreesCelsius",
            covIncrement=0.1,
            statusFlags=[0, 0, 0, 0],
        ),
        "occupancy": BinaryInputObject(
            objectIdentifier=("binaryInput", 1),
            objectName="occupancy",
            presentValue="inactive",
            statusFlags=[0, 0, 0, 0],
        ),
        "mode": MultiStateValueObject(
            objectIdentifier=("multiStateValue", 1),
            objectName="mode",
            presentValue=1,
            numberOfStates=3,
            statusFlags=[0, 0, 0, 0],
        ),
    }
    for obj in objects.values():
        app.add_object(obj)
    await bound(args.address)
    print("ready", flush=True)

    loop = asyncio.get_running_loop()
    while True:
        line = await loop.run_in_executor(None, sys.stdin.readline)
        if not line:
            break
        words = line.split()
        if not words:
            continue
        if words[0] == "quit":
            break
        if words[0] == "set" and len(words) == 3 and words[1] == "temperature":
            objects["temperature"].presentValue = float(words[2])
            print("ok", flush=True)
        elif words[0] == "set" and len(words) == 3 and words[1] == "occupancy":
            objects["occupancy"].presentValue = words[2]
            print("ok", flush=True)
        elif words[0] == "show" and len(words) == 2 and words[1] in objects:
            obj = objects[words[1]]
            shown = {"pv": plain(obj.presentValue)}
            priority_array = getattr(obj, "priorityArray", None)
            if priority_array is not None:
                shown["pa"] = [slot_value(slot) for slot in priority_array]
            print(json.dumps(shown), flush=True)
        else:
            print(f"error unknown command {line.strip()!r}", flush=True)
    app.close()


if __name__ == "__main__":
    asyncio.run(main())
