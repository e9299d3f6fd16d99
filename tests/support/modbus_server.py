#!/usr/bin/python3
"""Modbus server for semilab tests: Debian's python3-pymodbus (3.0), a fixed golden register layout.

  modbus_server.py --port P               TCP on 127.0.0.1:P
  modbus_server.py --serial /dev/pts/N    RTU (19200 8N1) on a pty (socat pair); pyserial cannot
                                          re-apply even parity to a Linux pty (EINVAL)

Units 1 and 7 answer (the same registers); others get no reply. Prints "ready" when serving.
Holding registers 0..63 (zero-based addresses; reads past 63 give exception 02):
  0-1   123456.0 f32 ABCD  [0x47F1, 0x2000]        2-3  CDAB [0x2000, 0x47F1]
  4-5   BADC [0xF147, 0x0020]                      6-7  DCBA [0x0020, 0xF147]
  8-9   -123456 i32 ABCD   [0xFFFE, 0x1DC0]
  10-13 2^53+1 u64 ABCD    [0x0020, 0, 0, 1]
  14    2315 (u16; scale 0.1 offset -10 -> 221.5)
  15    0x0024 (bits 2 and 5 set)
  16-19 "AB12CD" string    [0x4142, 0x3132, 0x4344, 0]
  20    250 (a setpoint, written by tests)
  21    -5 i16 [0xFFFB]
Input registers 0..15: 0 -> 1234, 1 -> 0x8000. Coils 0..15: 0 and 3 on. Discrete inputs 0..15: 1 on.
"""
import argparse
import sys

from pymodbus.datastore import (ModbusSequentialDataBlock, ModbusServerContext,
                                ModbusSlaveContext)
from pymodbus.server import StartSerialServer, StartTcpServer
from pymodbus.transaction import ModbusRtuFramer


def holding():
    regs = [0] * 64
    regs[0:8] = [0x47F1, 0x2000, 0x2000, 0x47F1, 0xF147, 0x0020, 0x0020, 0xF147]
    regs[8:10] = [0xFFFE, 0x1DC0]
    regs[10:14] = [0x0020, 0x0000, 0x0000, 0x0001]
    regs[14] = 2315
    regs[15] = 0x0024
    regs[16:20] = [0x4142, 0x3132, 0x4344, 0x0000]
    regs[20] = 250
    regs[21] = 0xFFFB
    return regs


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int)
    ap.add_argument("--serial")
    a = ap.parse_args()
    coils = [0] * 16
    coils[0] = coils[3] = 1
    discretes = [0] * 16
    discretes[1] = 1
    inputs = [0] * 16
    inputs[0] = 1234
    inputs[1] = 0x8000
    slave = ModbusSlaveContext(
        di=ModbusSequentialDataBlock(0, discretes),
        co=ModbusSequentialDataBlock(0, coils),
        hr=ModbusSequentialDataBlock(0, holding()),
        ir=ModbusSequentialDataBlock(0, inputs),
        zero_mode=True)
    context = ModbusServerContext(slaves={1: slave, 7: slave}, single=False)
    print("ready", flush=True)
    if a.serial:
        StartSerialServer(context=context, framer=ModbusRtuFramer, port=a.serial, baudrate=19200,
                          parity="N", stopbits=1, bytesize=8, timeout=0.05)
    else:
        # SO_REUSEADDR: a restarted device binds its port again at once, as real servers do.
        StartTcpServer(context=context, address=("127.0.0.1", a.port), allow_reuse_address=True)


if __name__ == "__main__":
    sys.exit(main())
