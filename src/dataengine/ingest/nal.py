"""What an H.264 packet holds, read from its NAL unit headers without decoding: reference or not, IDR.

Ingest uses this to leave out of the decoder the frames no sample needs and no other frame refers to
(docs/ingest.md, "Frames that are not decoded"). Only the first byte of each NAL unit is read; the
walk also checks that the unit lengths tile the packet exactly, so a packet whose framing is damaged
is reported as unknown and goes to the decoder like any other.
"""

from __future__ import annotations

from dataclasses import dataclass

_SLICE = 1  # coded slice of a non-IDR picture
_IDR_SLICE = 5


@dataclass(frozen=True, slots=True)
class PictureKind:
    """One packet's picture: whether any of its slices is a reference (``nal_ref_idc`` > 0), and IDR."""

    reference: bool
    idr: bool


class H264Packets:
    """Reads packets of one H.264 stream; ``extradata`` says whether they are length-prefixed (avcC)."""

    def __init__(self, extradata: bytes | None) -> None:
        data = extradata or b""
        # avcC starts with configurationVersion 1; its 5th byte holds the NAL length size minus one.
        self.length_size = (data[4] & 3) + 1 if len(data) >= 7 and data[0] == 1 else 0

    def kind(self, packet: bytes | memoryview) -> PictureKind | None:
        """The packet's picture kind; None when it holds no slice or its framing does not add up."""
        headers = self._length_prefixed(packet) if self.length_size else _annex_b(packet)
        if headers is None:
            return None
        slices = [h for h in headers if h & 0x1F in (_SLICE, _IDR_SLICE)]
        if not slices or any(h & 0x80 for h in headers):  # forbidden_zero_bit set: damaged.
            return None
        return PictureKind(
            reference=any(h & 0x60 for h in slices), idr=any(h & 0x1F == _IDR_SLICE for h in slices)
        )

    def _length_prefixed(self, packet: bytes | memoryview) -> list[int] | None:
        size, position, headers = len(packet), 0, []
        while position < size:
            if position + self.length_size >= size:
                return None
            length = int.from_bytes(packet[position : position + self.length_size], "big")
            position += self.length_size
            if length <= 0 or position + length > size:
                return None
            headers.append(packet[position])
            position += length
        return headers


def _annex_b(packet: bytes | memoryview) -> list[int] | None:
    """NAL headers after each ``00 00 01`` start code (MPEG-TS, raw .h264)."""
    data = bytes(packet)
    headers, position = [], data.find(b"\x00\x00\x01")
    while position >= 0 and position + 3 < len(data):
        headers.append(data[position + 3])
        position = data.find(b"\x00\x00\x01", position + 3)
    return headers or None
