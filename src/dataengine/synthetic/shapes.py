"""Sprites of the synthetic classes and the textured background they move over.

A sprite is an RGB patch with a mask of the pixels it paints, cropped tight to the mask, so the box of a
pasted sprite is exactly its ground-truth box. Sizes are given for a 240-pixel-high frame and scaled.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from PIL import Image

RGB = tuple[int, int, int]

_SKIN: tuple[RGB, ...] = ((241, 194, 125), (198, 134, 66), (141, 85, 36), (224, 172, 105), (255, 219, 172))
_SHIRT: tuple[RGB, ...] = ((200, 40, 40), (40, 90, 200), (40, 160, 70), (230, 200, 40), (150, 60, 170))
_TROUSERS: tuple[RGB, ...] = ((30, 30, 60), (60, 50, 40), (20, 20, 20), (70, 80, 90))
_BLANKET: tuple[RGB, ...] = ((70, 110, 190), (190, 90, 90), (90, 160, 120), (210, 170, 90))
_WOOD: tuple[RGB, ...] = ((120, 80, 40), (150, 110, 70), (90, 60, 35))
_SEAT: tuple[RGB, ...] = ((30, 30, 30), (20, 40, 120), (140, 20, 20))


@dataclass(frozen=True, slots=True)
class Sprite:
    """An RGB ``uint8`` patch (h, w, 3) and the boolean mask (h, w) of the pixels it paints."""

    rgb: NDArray[np.uint8]
    mask: NDArray[np.bool_]

    @property
    def height(self) -> int:
        return int(self.mask.shape[0])

    @property
    def width(self) -> int:
        return int(self.mask.shape[1])

    @property
    def n_pixels(self) -> int:
        """Number of painted pixels."""
        return int(self.mask.sum())


class _Canvas:
    """Draws filled rectangles, discs and rings into an RGB patch and its mask."""

    def __init__(self, height: int, width: int) -> None:
        self.rgb = np.zeros((height, width, 3), dtype=np.uint8)
        self.mask = np.zeros((height, width), dtype=bool)
        self._yy, self._xx = np.mgrid[0:height, 0:width]

    def rect(self, x1: float, y1: float, x2: float, y2: float, colour: RGB) -> None:
        h, w = self.mask.shape
        ys = slice(max(0, round(y1)), min(h, round(y2)))
        xs = slice(max(0, round(x1)), min(w, round(x2)))
        self.rgb[ys, xs] = colour
        self.mask[ys, xs] = True

    def ring(self, cx: float, cy: float, r_outer: float, r_inner: float, colour: RGB) -> None:
        dist2 = (self._xx - cx) ** 2 + (self._yy - cy) ** 2
        where = (dist2 <= r_outer**2) & (dist2 >= r_inner**2)
        self.rgb[where] = colour
        self.mask[where] = True

    def disc(self, cx: float, cy: float, radius: float, colour: RGB) -> None:
        self.ring(cx, cy, radius, 0.0, colour)

    def sprite(self, *, mirror: bool = False) -> Sprite:
        rows = np.flatnonzero(self.mask.any(axis=1))
        cols = np.flatnonzero(self.mask.any(axis=0))
        crop = (slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1))
        rgb, mask = self.rgb[crop], self.mask[crop]
        if mirror:
            rgb, mask = rgb[:, ::-1], mask[:, ::-1]
        return Sprite(rgb=np.ascontiguousarray(rgb), mask=np.ascontiguousarray(mask))


def _pick(rng: np.random.Generator, palette: tuple[RGB, ...]) -> RGB:
    base = palette[int(rng.integers(len(palette)))]
    jitter = rng.integers(-18, 19, size=3)
    return tuple(int(v) for v in np.clip(np.array(base) + jitter, 0, 255))  # type: ignore[return-value]


def person_sprite(rng: np.random.Generator, scale: float) -> Sprite:
    """A tall figure: head, shirt, two legs (about 1:2.6 wide to high)."""
    h = int(rng.uniform(62, 105) * scale)
    w = max(6, int(h * rng.uniform(0.34, 0.42)))
    canvas = _Canvas(h, w)
    head_r = w * 0.26
    canvas.disc(w / 2, head_r, head_r, _pick(rng, _SKIN))
    canvas.rect(0, head_r * 2, w, h * 0.6, _pick(rng, _SHIRT))
    trousers = _pick(rng, _TROUSERS)
    canvas.rect(w * 0.1, h * 0.6, w * 0.45, h, trousers)
    canvas.rect(w * 0.55, h * 0.6, w * 0.9, h, trousers)
    return canvas.sprite()


def bed_sprite(rng: np.random.Generator, scale: float) -> Sprite:
    """A wide, flat shape: headboard, mattress with sheet, pillow and blanket, legs (about 2.3:1)."""
    w = int(rng.uniform(95, 140) * scale)
    h = max(6, int(w * rng.uniform(0.36, 0.48)))
    canvas = _Canvas(h, w)
    wood = _pick(rng, _WOOD)
    canvas.rect(0, 0, w * 0.09, h, wood)
    canvas.rect(w * 0.09, h * 0.35, w, h * 0.8, (236, 236, 228))
    canvas.rect(w * 0.11, h * 0.25, w * 0.3, h * 0.45, (250, 250, 250))
    canvas.rect(w * 0.38, h * 0.3, w, h * 0.72, _pick(rng, _BLANKET))
    canvas.rect(w * 0.9, h * 0.8, w * 0.97, h, wood)
    canvas.rect(w * 0.09, h * 0.8, w * 0.16, h, wood)
    return canvas.sprite(mirror=bool(rng.integers(2)))


def wheelchair_sprite(rng: np.random.Generator, scale: float) -> Sprite:
    """A big spoked wheel as a ring, a small caster, seat and backrest (about square)."""
    h = int(rng.uniform(52, 74) * scale)
    w = max(8, int(h * rng.uniform(0.9, 1.05)))
    canvas = _Canvas(h, w)
    frame_colour = _pick(rng, ((170, 170, 180), (110, 110, 120)))
    seat = _pick(rng, _SEAT)
    canvas.rect(w * 0.1, h * 0.02, w * 0.27, h * 0.6, seat)
    canvas.rect(w * 0.1, h * 0.42, w * 0.85, h * 0.56, seat)
    canvas.rect(w * 0.8, h * 0.5, w * 0.86, h * 0.85, frame_colour)
    r = h * 0.33
    canvas.ring(w * 0.4, h - r - 1, r, r * 0.78, (25, 25, 25))
    canvas.disc(w * 0.4, h - r - 1, r * 0.18, frame_colour)
    canvas.ring(w * 0.84, h * 0.91, h * 0.09, h * 0.04, (25, 25, 25))
    return canvas.sprite(mirror=bool(rng.integers(2)))


def generic_sprite(rng: np.random.Generator, scale: float, label: str) -> Sprite:
    """An ellipse in a colour fixed by the class name, for classes without a drawn shape."""
    h = int(rng.uniform(40, 70) * scale)
    w = max(6, int(h * rng.uniform(0.8, 1.4)))
    canvas = _Canvas(h, w)
    code = zlib.crc32(label.encode("utf-8"))
    colour = (code & 0xFF, (code >> 8) & 0xFF, (code >> 16) & 0xFF)
    yy, xx = np.mgrid[0:h, 0:w]
    inside = ((xx - w / 2) / (w / 2)) ** 2 + ((yy - h / 2) / (h / 2)) ** 2 <= 1.0
    canvas.rgb[inside] = colour
    canvas.mask[inside] = True
    return canvas.sprite()


_SPRITES: dict[str, Callable[[np.random.Generator, float], Sprite]] = {
    "person": person_sprite,
    "bed": bed_sprite,
    "wheelchair": wheelchair_sprite,
}


def sprite_for(label: str, rng: np.random.Generator, *, scale: float) -> Sprite:
    """A new random sprite of class ``label`` (a generic ellipse for unknown classes)."""
    draw = _SPRITES.get(label)
    return draw(rng, scale) if draw is not None else generic_sprite(rng, scale, label)


def background(rng: np.random.Generator, *, width: int, height: int) -> tuple[NDArray[np.uint8], int]:
    """A room: a wall and a floor of random tints, low-frequency blotches, a few static panels.

    Returns the RGB image and the row of the horizon (where the floor starts).
    """
    horizon = int(height * rng.uniform(0.3, 0.45))
    wall = rng.uniform(110, 200, size=3)
    floor = rng.uniform(60, 150, size=3)
    image = np.empty((height, width, 3), dtype=np.float32)
    image[:horizon] = wall
    image[horizon:] = floor
    # Smoothly upsampled coarse noise: blotches without sharp edges that could pass for an object's.
    coarse = rng.normal(0.0, 16.0, size=(height // 30 + 2, width // 30 + 2)).astype(np.float32)
    blotches = Image.fromarray(coarse, mode="F").resize((width, height), Image.Resampling.BILINEAR)
    image += np.asarray(blotches, dtype=np.float32)[:, :, None]
    for _ in range(int(rng.integers(2, 5))):
        x1 = int(rng.integers(0, width - 20))
        y1 = int(rng.integers(0, max(1, horizon - 20)))
        x2 = min(width, x1 + int(rng.integers(15, 60)))
        y2 = min(horizon, y1 + int(rng.integers(15, 50)))
        image[y1:y2, x1:x2] = rng.uniform(50, 230, size=3)
    stripes = (np.arange(width) // 12 % 2).astype(np.float32) * 10.0
    image[horizon:] += stripes[None, :, None]
    return np.clip(image, 0, 255).astype(np.uint8), horizon
