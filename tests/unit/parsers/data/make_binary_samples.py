#!/usr/bin/python3
"""Writes the binary sample files of tests/unit/parsers (run once; outputs are committed).

raman.spc      Thermo Galactic SPC, new format 0x4B (GRAMS SPC file format, Galactic 1997;
               field offsets as in github.com/rohanisaac/spc): 5 points, 32-bit integer Y
               with exponent 16 (y = int * 2^(16-32)), evenly spaced X 500..504 cm-1 (Raman).
raman_float.spc same with IEEE float Y (fexp = 0x80) and 3 points.
fei.tif        2x2 8-bit classic TIFF (TIFF 6.0) with an FEI INI block in tag 34682.
zeiss.tif      2x2 8-bit big-endian TIFF with a Zeiss SmartSEM block in tag 34118.
"""
import struct

def spc(path, yvals, floaty):
    n = len(yvals)
    h = bytearray(512)
    h[0] = 0x00                      # ftflgs: single file, evenly spaced X
    h[1] = 0x4B                      # fversn: new format, little-endian
    h[2] = 11                        # fexper: Raman
    h[3] = 0x80 if floaty else 16    # fexp
    struct.pack_into('<I', h, 4, n)
    struct.pack_into('<d', h, 8, 500.0)
    struct.pack_into('<d', h, 16, 500.0 + (n - 1))
    struct.pack_into('<I', h, 24, 1)
    h[28] = 13                       # fxtype: Raman shift cm-1
    h[29] = 4                        # fytype: counts
    h[45:45 + 8] = b'semilab\0'
    cm = b'Si reference, 785 nm'
    h[88:88 + len(cm)] = cm
    sub = bytearray(32)
    sub[1] = 0x80 if floaty else 16
    struct.pack_into('<I', sub, 16, n)
    if floaty:
        data = b''.join(struct.pack('<f', v) for v in yvals)
    else:
        data = b''.join(struct.pack('<i', int(round(v * 65536))) for v in yvals)
    open(path, 'wb').write(bytes(h) + bytes(sub) + data)

def tiff(path, tag, text, big):
    e = '>' if big else '<'
    payload = text.encode('latin-1') + b'\0'
    entries = [(256, 3, 1, 2), (257, 3, 1, 2), (258, 3, 1, 8), (259, 3, 1, 1), (262, 3, 1, 1),
               (273, 4, 1, None), (277, 3, 1, 1), (278, 3, 1, 2), (279, 4, 1, 4), (tag, 2, len(payload), None)]
    ifd_off = 8
    ifd_len = 2 + 12 * len(entries) + 4
    pix_off = ifd_off + ifd_len
    txt_off = pix_off + 4
    out = bytearray((b'MM' if big else b'II') + struct.pack(e + 'HI', 42, ifd_off))
    out += struct.pack(e + 'H', len(entries))
    for t, ty, cnt, val in entries:
        if t == 273:
            val = pix_off
        if t == tag:
            val = txt_off
        if ty == 3:
            out += struct.pack(e + 'HHIHH', t, ty, cnt, val, 0)
        else:
            out += struct.pack(e + 'HHII', t, ty, cnt, val)
    out += struct.pack(e + 'I', 0)
    out += bytes([0, 64, 128, 255])
    out += payload
    open(path, 'wb').write(bytes(out))

spc('raman.spc', [10.0, 20.5, 100.25, 30.0, 12.0], False)
spc('raman_float.spc', [1.5, 2.5, 3.5], True)
tiff('fei.tif', 34682,
     '[User]\r\nDate=11/27/2026\r\n[Beam]\r\nHV=5000\r\nBeam=EBeam\r\n[EBeam]\r\nHV=5000\r\nWD=0.0041\r\n'
     '[Scan]\r\nPixelWidth=2.5e-09\r\nPixelHeight=2.5e-09\r\n[Stage]\r\nWorkingDistance=0.00405\r\n'
     '[Detectors]\r\nName=TLD\r\nMode=SE\r\n', False)
tiff('zeiss.tif', 34118,
     '0\r\n0\r\nAP_PIXEL_SIZE\r\nPixel Size = 1.116 nm\r\nAP_MAG\r\nMag = 100.00 K X\r\n'
     'AP_WD\r\nWD = 5.1 mm\r\nAP_ACTUALKV\r\nEHT = 3.00 kV\r\nDP_DETECTOR_CHANNEL\r\nSignal A = InLens\r\n'
     'AP_BEAM_CURRENT\r\nBeam current = 1.0 \xb5A\r\nEND\r\n', True)
