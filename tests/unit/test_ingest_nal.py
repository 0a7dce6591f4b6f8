"""H.264 packet kinds from NAL headers, and which frames the decoder may leave out."""

from __future__ import annotations

from fractions import Fraction

import numpy as np

from dataengine.ingest.index import build_index
from dataengine.ingest.nal import H264Packets, PictureKind
from dataengine.ingest.skipping import frames_to_skip, missing_frames

AVCC = bytes([1, 100, 0, 40, 0xFF, 0xE1, 0])  # configurationVersion 1, NAL lengths of 4 bytes


def _unit(header: int, payload: bytes = b"\x88\x84") -> bytes:
    return len(payload + b"x").to_bytes(4, "big") + bytes([header]) + payload


def test_length_prefixed_packets() -> None:
    packets = H264Packets(AVCC)
    sei = _unit(0x06)
    assert packets.kind(sei + _unit(0x65)) == PictureKind(reference=True, idr=True)  # IDR slice
    assert packets.kind(_unit(0x41)) == PictureKind(reference=True, idr=False)  # ref_idc 2, P slice
    assert packets.kind(sei + _unit(0x01)) == PictureKind(reference=False, idr=False)  # ref_idc 0
    assert packets.kind(_unit(0x01) + _unit(0x21)) == PictureKind(reference=True, idr=False)  # any slice
    assert packets.kind(sei) is None  # no slice
    assert packets.kind(_unit(0x01)[:-1]) is None  # a unit longer than the packet: damaged framing
    assert packets.kind(_unit(0x81)) is None  # forbidden_zero_bit set


def test_annex_b_packets() -> None:
    packets = H264Packets(None)
    assert packets.kind(b"\x00\x00\x00\x01\x09\xf0\x00\x00\x01\x01\x88") == PictureKind(False, False)
    assert packets.kind(b"\x00\x00\x01\x65\x88") == PictureKind(reference=True, idr=True)
    assert packets.kind(b"\x12\x34") is None


def test_frames_to_skip_follows_decode_order() -> None:
    # Presentation: I0 B1 B2 P3 B4 B5 P6 P7 | I8 ; decode: I0 P3 B1 B2 P6 B4 B5 P7 I8.
    decode_pts = np.array([0, 3, 1, 2, 6, 4, 5, 7, 8], dtype=np.int64)
    key = decode_pts % 8 == 0
    picture = np.array([2, 1, 0, 0, 1, 0, 0, 1, 2], dtype=np.int8)  # in decode order
    index = build_index(decode_pts, key, time_base=Fraction(1, 10), fps=10.0, decode_picture=picture)
    needed = np.zeros(9, dtype=np.bool_)
    needed[[0, 4]] = True  # I0 and B4 are sampled
    skip = frames_to_skip(index, needed)
    assert skip is not None
    # B1, B2, B5: non-reference; P7: after the last needed frame of its GOP, before the IDR.
    # P3 and P6 stay: B4 is predicted from them. I8 starts a GOP nothing needs, so it goes too.
    assert np.flatnonzero(skip).tolist() == [1, 2, 5, 7, 8]
    needed[8] = True
    skip = frames_to_skip(index, needed)
    assert skip is not None
    assert np.flatnonzero(skip).tolist() == [1, 2, 5, 7]
    picture[7] = -1  # P7 unknown: decoded, and so is every reference frame before it in its GOP
    index = build_index(decode_pts, key, time_base=Fraction(1, 10), fps=10.0, decode_picture=picture)
    skip = frames_to_skip(index, needed)
    assert skip is not None
    assert np.flatnonzero(skip).tolist() == [1, 2, 5]
    assert frames_to_skip(index, np.ones(9, dtype=np.bool_)) is None


def test_missing_frames_leave_out_the_skipped_ones() -> None:
    skip = np.array([False, True, True, False, True, False])
    assert missing_frames(1, 3, skip) is None
    assert missing_frames(1, 5, skip) == (3, 4)
    assert missing_frames(0, 6, None) == (0, 6)
    assert missing_frames(4, 4, skip) is None
