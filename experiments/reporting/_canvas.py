"""Fast figure composition with Pillow: text, boxes, colour bars around an RGB image.

The heatmaps and gallery crops are drawn on the worker for every scan, so they must be cheap:
composing them with Pillow takes a few milliseconds where a Matplotlib figure took a second.
Text uses the DejaVu fonts that Matplotlib ships (found on disk, without importing Matplotlib);
plain text only, so names are never parsed as markup.
"""

from __future__ import annotations

import functools
import importlib.util
import textwrap
from pathlib import Path

import numpy as np

__all__ = ["Canvas", "font", "text_width", "wrap"]


@functools.lru_cache(maxsize=1)
def _font_dir() -> Path | None:
    spec = importlib.util.find_spec("matplotlib")
    if spec is None or spec.origin is None:
        return None
    d = Path(spec.origin).parent / "mpl-data" / "fonts" / "ttf"
    return d if d.is_dir() else None


@functools.lru_cache(maxsize=32)
def font(size: int, bold: bool = False):
    """DejaVu Sans (bold) at ``size`` px; Pillow's default font when it cannot be found."""
    from PIL import ImageFont

    d = _font_dir()
    name = "DejaVuSans-Bold.ttf" if bold else "DejaVuSans.ttf"
    if d is not None and (d / name).is_file():
        return ImageFont.truetype(str(d / name), size=max(6, int(size)))
    return ImageFont.load_default(size=max(6, int(size)))


def text_width(text: str, size: int, bold: bool = False) -> float:
    return float(font(size, bold).getlength(text))


def wrap(text: str, width_px: float, size: int, bold: bool = False, indent: str = "") -> list[str]:
    """Lines of ``text`` that fit ``width_px`` at ``size`` px."""
    if not text:
        return []
    avg = max(1.0, text_width("abcdefghijklmnopqrstuvwxyz0123456789", size, bold) / 36)
    chars = max(8, int(width_px / avg))
    return textwrap.wrap(text, chars, subsequent_indent=indent) or [""]


class Canvas:
    """A white RGB canvas with helpers; ``array()`` returns (H, W, 3) uint8."""

    def __init__(self, width: int, height: int, background=(255, 255, 255)):
        from PIL import Image, ImageDraw

        self.image = Image.new("RGB", (int(width), int(height)), background)
        self.draw = ImageDraw.Draw(self.image)

    def paste(self, rgb: np.ndarray, x: int, y: int) -> None:
        from PIL import Image

        self.image.paste(Image.fromarray(np.ascontiguousarray(rgb)), (int(x), int(y)))

    def text(self, x: float, y: float, text: str, *, size: int, bold: bool = False, fill=(0, 0, 0),
             anchor: str = "la") -> None:
        self.draw.text((x, y), text, font=font(size, bold), fill=fill, anchor=anchor)

    def tag(self, x: float, y: float, text: str, *, size: int, bg, fg=(255, 255, 255), anchor: str = "lt",
            clip: tuple[int, int] | None = None) -> None:
        """Bold text on a filled box (a cluster's number on its outline)."""
        f = font(size, True)
        l, t, r, b = self.draw.textbbox((x, y), text, font=f, anchor=anchor)
        pad = max(1, size // 6)
        if clip is not None:  # keep the tag inside the image area
            dx = min(0, clip[0] - (r + pad)) + max(0, -(l - pad))
            dy = min(0, clip[1] - (b + pad)) + max(0, -(t - pad))
            x, y, l, t, r, b = x + dx, y + dy, l + dx, t + dy, r + dx, b + dy
        self.draw.rectangle((l - pad, t - pad, r + pad, b + pad), fill=bg)
        self.draw.text((x, y), text, font=f, fill=fg, anchor=anchor)

    def rect(self, box: tuple[float, float, float, float], *, outline, width: int = 2, dash: int = 0) -> None:
        """``box`` = (x0, y0, x1, y1), inclusive; ``dash`` > 0 draws dashed edges."""
        x0, y0, x1, y1 = box
        if not dash:
            self.draw.rectangle((x0, y0, x1, y1), outline=outline, width=width)
            return
        for (a, b) in (((x0, y0), (x1, y0)), ((x1, y0), (x1, y1)), ((x1, y1), (x0, y1)), ((x0, y1), (x0, y0))):
            length = max(abs(b[0] - a[0]), abs(b[1] - a[1]))
            steps = max(1, int(length // (2 * dash)))
            for i in range(steps + 1):
                s, e = (2 * i * dash) / max(length, 1), min(1.0, (2 * i + 1) * dash / max(length, 1))
                if s >= 1:
                    break
                self.draw.line((a[0] + (b[0] - a[0]) * s, a[1] + (b[1] - a[1]) * s,
                                a[0] + (b[0] - a[0]) * e, a[1] + (b[1] - a[1]) * e), fill=outline, width=width)

    def dot(self, x: float, y: float, r: float, *, fill, outline=(255, 255, 255)) -> None:
        self.draw.ellipse((x - r, y - r, x + r, y + r), fill=fill, outline=outline, width=1)

    def line(self, xy, *, fill, width: int = 1) -> None:
        self.draw.line(xy, fill=fill, width=width)

    def colorbar(self, x: int, y: int, w: int, h: int, lut: np.ndarray, lo: float, hi: float, *,
                 label: str, size: int) -> None:
        """A vertical colour bar (``lut``: (K, 3) uint8, bottom = ``lo``) with 5 ticks and a label."""
        idx = np.linspace(len(lut) - 1, 0, h).round().astype(int)
        bar = np.repeat(lut[idx][:, None, :], w, axis=1)
        self.paste(bar, x, y)
        self.draw.rectangle((x, y, x + w - 1, y + h - 1), outline=(0, 0, 0), width=1)
        for t in np.linspace(0, 1, 5):
            ty = y + (1 - t) * (h - 1)
            self.draw.line((x + w, ty, x + w + 4, ty), fill=(0, 0, 0), width=1)
            v = lo + t * (hi - lo)
            self.text(x + w + 7, ty, f"{v:.3g}", size=size, anchor="lm")
        from PIL import Image, ImageDraw

        # the label, rotated, right of the tick labels
        f = font(size)
        tw = int(f.getlength(label)) + 4
        im = Image.new("RGB", (tw, size + 6), (255, 255, 255))
        ImageDraw.Draw(im).text((2, 1), label, font=f, fill=(0, 0, 0))
        rot = im.rotate(90, expand=True)
        lx = x + w + 7 + int(text_width("0.000", size)) + 6
        self.image.paste(rot, (lx, int(y + (h - rot.size[1]) / 2)))

    def array(self) -> np.ndarray:
        return np.asarray(self.image, dtype=np.uint8).copy()
