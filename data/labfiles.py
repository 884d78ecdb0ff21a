"""Files the way microscope software writes them, made here (never downloaded): for tests and evaluations.

- :func:`write_imagej_tiff` - ImageJ/Fiji (``unit=micron`` in the description, XResolution in px/unit);
- :func:`write_ome_tiff` - OME-TIFF with ``PhysicalSizeX/Y`` and their units (tifffile's OME writer);
- :func:`write_fei_tiff` - FEI/Thermo SEM: ASCII tag 34682 with ``[User] [Beam] [Scan] PixelWidth=`` sections;
- :func:`write_zeiss_sem_tiff` - Zeiss SmartSEM: tag 34118 (CZ_SEM) with ``AP_PIXEL_SIZE`` entries;
- :func:`write_resolution_tiff` - baseline TIFF resolution tags (centimetre or inch);
- :func:`write_czi` - Zeiss CZI with Scaling metadata (needs the ``vendor`` extra: pylibCZIrw);
- :func:`burn_annotations` / :func:`make_lab_micrograph` - a micrograph with a burned-in data bar and/or
  scale bar (lengths, label texts, fonts, polarities, positions), with the true annotation mask.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import tifffile

from ._glyphs import FONTS, has_micro, render_text

__all__ = [
    "AnnotationTruth",
    "BarStyle",
    "LabMicrograph",
    "burn_annotations",
    "make_lab_micrograph",
    "random_bar_style",
    "write_czi",
    "write_fei_tiff",
    "write_imagej_tiff",
    "write_ome_tiff",
    "write_resolution_tiff",
    "write_zeiss_sem_tiff",
]


# ---------------------------------------------------------------- calibrated files


def write_imagej_tiff(path: str | Path, pixels: np.ndarray, *, pixel_size_um: float, unit: str = "micron") -> Path:
    """ImageJ/Fiji TIFF: ``unit`` in the ImageJ description, XResolution = pixels per unit.

    ``unit`` may be 'micron' (what Fiji writes), 'um', '\\u00B5m' (µm as ImageJ escapes it), 'nm' or 'mm'; the resolution
    is expressed in that unit.
    """
    per_um = {"micron": 1.0, "um": 1.0, "\\u00B5m": 1.0, "nm": 1e-3, "mm": 1e3}[unit]
    px_per_unit = 1.0 / (pixel_size_um / per_um)
    tifffile.imwrite(path, pixels, imagej=True, resolution=(px_per_unit, px_per_unit), metadata={"unit": unit})
    return Path(path)


def write_ome_tiff(path: str | Path, pixels: np.ndarray, *, pixel_size_um: float, unit: str = "µm") -> Path:
    """OME-TIFF with ``PhysicalSizeX/Y`` in ``unit`` ('µm', 'nm' or 'mm')."""
    per_um = {"µm": 1.0, "nm": 1e-3, "mm": 1e3}[unit]
    v = pixel_size_um / per_um
    tifffile.imwrite(
        path, pixels, ome=True,
        metadata={"axes": "YX", "PhysicalSizeX": v, "PhysicalSizeXUnit": unit,
                  "PhysicalSizeY": v, "PhysicalSizeYUnit": unit},
    )
    return Path(path)


def write_fei_tiff(path: str | Path, pixels: np.ndarray, *, pixel_size_um: float, hv_kv: float = 15.0,
                   tag: int = 34682) -> Path:
    """FEI/Thermo SEM TIFF: INI-style ASCII metadata in tag 34682 (FEI_HELIOS; 34680 = FEI_SFEG).

    Sections and keys as FEI xT software writes them (``PixelWidth`` in metres,
    CRLF line ends, ``e-007`` exponents).
    """
    m = pixel_size_um * 1e-6
    rows, cols = pixels.shape[:2]
    lines = [
        "[User]", "Date=03/12/2024", "Time=10:21:07 AM", "User=user", "UserText=",
        "[System]", "Type=SEM", "Dnumber=9922654", "Software=7.6.3.3358", "BuildNr=3358", "Source=FEG",
        "[Beam]", f"HV={hv_kv * 1000:.0f}", "Spot=3", "StigmatorX=0", "StigmatorY=0", "BeamShiftX=0", "BeamShiftY=0",
        "ScanRotation=0", "ImageMode=Normal", "Beam=EBeam", "Scan=EScan",
        "[EBeam]", "Source=FEG", "ColumnType=NOVA", f"HV={hv_kv * 1000:.0f}", "WD=0.00497", "BeamCurrent=1.6e-010",
        "[Scan]", "InternalScan=true", "Dwelltime=3e-006", f"PixelWidth={m:.6e}".replace("e-0", "e-00"),
        f"PixelHeight={m:.6e}".replace("e-0", "e-00"), f"HorFieldsize={m * cols:.6e}", f"VerFieldsize={m * rows:.6e}",
        "FrameTime=10.6", "LineTime=0.0041",
        "[EScan]", "Scan=EScan", "InternalScan=true", f"PixelWidth={m:.6e}", f"PixelHeight={m:.6e}",
        f"HorFieldsize={m * cols:.6e}", f"VerFieldsize={m * rows:.6e}",
        "[Image]", f"ResolutionX={cols}", f"ResolutionY={rows}", "DigitalContrast=1", "DigitalBrightness=0",
    ]
    text = "\r\n".join(lines) + "\r\n"
    tifffile.imwrite(path, pixels, extratags=[(tag, "s", 0, text, True)])
    return Path(path)


def write_zeiss_sem_tiff(path: str | Path, pixels: np.ndarray, *, pixel_size_um: float, unit: str = "nm",
                         image_pixel_size: bool = True, magnification: str = "1.00 K X") -> Path:
    """Zeiss SmartSEM TIFF: tag 34118 (CZ_SEM), upper-case parameter names each followed by ``Label = value unit``.

    ``unit`` is 'nm', 'µm' (written in Latin-1 as SmartSEM does) or 'pm'.
    """
    factor = {"nm": 1e3, "µm": 1.0, "pm": 1e6}[unit]
    value = pixel_size_um * factor
    entries = [
        ("AP_WD", "WD = 8.5 mm"),
        ("AP_MAG", f"Mag = {magnification}"),
        ("AP_PIXEL_SIZE", f"Pixel Size = {value:.6g} {unit}"),
        ("DP_DETECTOR_CHANNEL", "Signal A = SE2"),
        ("AP_ACTUALKV", "EHT = 15.00 kV"),
    ]
    if image_pixel_size:
        entries.append(("AP_IMAGE_PIXEL_SIZE", f"Image Pixel Size = {value:.6g} {unit}"))
    lines = ["0", "0", "0", "0", "0", "0", "0", "0", "0", "0", "0", "0"]  # SmartSEM's unnamed leading values
    for name, val in entries:
        lines += [name, val]
    text = ("\r\n".join(lines) + "\r\n").encode("latin-1")
    tifffile.imwrite(path, pixels, extratags=[(34118, "B", len(text), text, True)])
    return Path(path)


def write_resolution_tiff(path: str | Path, pixels: np.ndarray, *, pixel_size_um: float, unit: str = "CENTIMETER") -> Path:
    """Baseline TIFF with XResolution/YResolution in pixels per centimetre or inch."""
    per_unit_um = {"CENTIMETER": 1e4, "INCH": 25_400.0}[unit]
    ppu = per_unit_um / pixel_size_um
    tifffile.imwrite(path, pixels, resolution=(ppu, ppu), resolutionunit=unit)
    return Path(path)


def write_czi(path: str | Path, pixels: np.ndarray, *, pixel_size_um: float) -> Path:
    """Zeiss CZI written with pylibCZIrw (the ``vendor`` extra), with Scaling in metres."""
    from pylibCZIrw import czi as pyczi

    with pyczi.create_czi(str(path), exist_ok=True) as w:
        w.write(data=np.ascontiguousarray(pixels), plane={"C": 0, "Z": 0, "T": 0})
        w.write_metadata(document_name=Path(path).stem, channel_names={0: "gray"},
                         scale_x=pixel_size_um * 1e-6, scale_y=pixel_size_um * 1e-6)
    return Path(path)


# ---------------------------------------------------------------- burned-in annotations

POSITIONS = ("databar", "top-left", "top-right", "bottom-left", "bottom-right")
_NICE = (1, 2, 2.5, 5)
_DATABAR_TEXTS = (
    "EHT = 15.00 kV   WD = 8.5 mm   Mag = {mag} X   Signal A = SE2   Date: 12 Mar 2024",
    "HV 20.0 kV  WD 10.2 mm  mag {mag} x  det ETD  HFW 254 um",
    "x{mag}  15kV  SEI  WD 11mm",
    "Sample 7A  etched 2% Nital  {mag}x",
)


@dataclass(frozen=True)
class BarStyle:
    """How a scale bar (and optionally a data bar) is burned into a micrograph."""

    pixel_size_um: float  # the image's true pixel size
    value: float  # the label's number
    unit: str  # 'µm', 'um', 'nm' or 'mm'
    thickness_px: int = 6
    polarity: str = "light"  # the bar's colour against its background: 'light' or 'dark'
    position: str = "bottom-right"  # one of POSITIONS
    font: str = "dejavu_sans"
    text_height_px: int = 18
    label_side: str = "above"  # 'above' or 'below' the bar
    space: bool = True  # '100 µm' or '100µm'
    backing_box: bool = False  # a filled box of the opposite colour behind bar and label
    end_ticks: bool = False  # short vertical ticks at both ends
    databar_height_px: int = 0  # 0 = no data bar
    databar_polarity: str = "dark"  # the data bar's background colour
    databar_text: str = ""

    @property
    def label(self) -> str:
        return f"{self.value:g}{' ' if self.space else ''}{self.unit}"

    @property
    def length_um(self) -> float:
        return self.value * {"µm": 1.0, "um": 1.0, "nm": 1e-3, "mm": 1e3}[self.unit]

    @property
    def length_px(self) -> int:
        return int(round(self.length_um / self.pixel_size_um))


@dataclass(frozen=True)
class AnnotationTruth:
    """Where the burned-in annotation is (inclusive boxes ``(rmin, cmin, rmax, cmax)``)."""

    mask: np.ndarray = field(repr=False)  # bool (M, N): data bar strip, bar, ticks, label text, backing box
    bar_box: tuple[int, int, int, int]
    label_box: tuple[int, int, int, int]
    data_bar: tuple[int, int, int, int] | None
    bar_length_px: int
    label: str
    pixel_size_um: float


@dataclass(frozen=True)
class LabMicrograph:
    pixels: np.ndarray = field(repr=False)
    truth: AnnotationTruth
    style: BarStyle
    base: str


def _paint(img: np.ndarray, cov: np.ndarray, r: int, c: int, value: float) -> tuple[int, int, int, int]:
    h, w = cov.shape
    r0, c0 = max(r, 0), max(c, 0)
    r1, c1 = min(r + h, img.shape[0]), min(c + w, img.shape[1])
    sub = cov[r0 - r:r1 - r, c0 - c:c1 - c]
    reg = img[r0:r1, c0:c1]
    img[r0:r1, c0:c1] = reg * (1 - sub) + value * sub
    return r0, c0, r1 - 1, c1 - 1


def burn_annotations(pixels: np.ndarray, style: BarStyle) -> tuple[np.ndarray, AnnotationTruth]:
    """Draw ``style``'s data bar, scale bar and label into a copy of ``pixels`` (uint8 or uint16 gray).

    The bar is ``style.length_px`` px long end to end (integer pixels, as software draws it),
    the label is anti-aliased text.  Returns the new pixels and the truth.
    """
    px = np.asarray(pixels)
    full = float(np.iinfo(px.dtype).max)
    img = px.astype(np.float32)
    M, N = img.shape
    mask = np.zeros((M, N), bool)
    fg = full if style.polarity == "light" else 0.0
    bgv = full - fg
    data_bar = None
    text_cov = render_text(style.label, style.font, style.text_height_px)
    th, tw = text_cov.shape
    L, t = style.length_px, style.thickness_px
    tick = max(2, int(round(1.2 * t))) if style.end_ticks else 0
    gap = max(3, t // 2 + 2)
    block_w = max(L, tw)
    block_h = t + 2 * tick + gap + th
    pad = max(4, int(round(0.4 * style.text_height_px)))
    if style.databar_height_px > 0:
        H = style.databar_height_px
        if style.position == "databar":
            H = max(H, block_h + 8)  # the bar and its label fit in the data bar, as software draws them
        dbv = 0.0 if style.databar_polarity == "dark" else full
        img[M - H:, :] = dbv
        data_bar = (M - H, 0, M - 1, N - 1)
        mask[M - H:, :] = True
        if style.databar_text:
            dtext = render_text(style.databar_text, style.font, max(10, int(0.8 * style.text_height_px)))
            dtext = dtext[:, : max(1, int(N * 0.55))]
            rr = M - H + (H - dtext.shape[0]) // 2
            _paint(img, dtext, rr, 10, full - dbv)
    if style.position == "databar":
        if style.databar_height_px <= 0:
            raise ValueError("position 'databar' needs databar_height_px > 0")
        top = M - H + max(2, (H - block_h) // 2)
        left = N - block_w - 12
        fg = full - (0.0 if style.databar_polarity == "dark" else full)
        bgv = full - fg
    else:
        margin = max(12, int(0.03 * N))
        usable_bottom = M - (H if style.databar_height_px > 0 else 0)
        top = margin if style.position.startswith("top") else usable_bottom - margin - block_h - 2 * pad
        left = margin if style.position.endswith("left") else N - margin - block_w - 2 * pad
        top, left = top + pad, left + pad
    if style.label_side == "above":
        text_r, bar_r = top, top + th + gap + tick
    else:
        bar_r, text_r = top + tick, top + tick + t + tick + gap
    bar_c = left + (block_w - L) // 2
    text_c = left + (block_w - tw) // 2
    if style.backing_box and style.position != "databar":
        r0b, c0b = top - pad, left - pad
        r1b, c1b = top + block_h + pad, left + block_w + pad
        img[r0b:r1b + 1, c0b:c1b + 1] = bgv
        mask[r0b:r1b + 1, c0b:c1b + 1] = True
    img[bar_r:bar_r + t, bar_c:bar_c + L] = fg
    if tick:
        tw_ = max(1, t // 2)
        for cc in (bar_c, bar_c + L - tw_):
            img[bar_r - tick:bar_r + t + tick, cc:cc + tw_] = fg
    bar_box = (bar_r - tick, bar_c, bar_r + t + tick - 1, bar_c + L - 1)
    mask[bar_box[0]:bar_box[2] + 1, bar_box[1]:bar_box[3] + 1] = True
    label_box = _paint(img, text_cov, text_r, text_c, fg)
    mask[label_box[0]:label_box[2] + 1, label_box[1]:label_box[3] + 1] = True
    out = np.clip(np.rint(img), 0, full).astype(px.dtype)
    truth = AnnotationTruth(mask, bar_box, label_box, data_bar, L, style.label, style.pixel_size_um)
    return out, truth


def random_bar_style(rng: np.random.Generator, shape: tuple[int, int], *, fonts: tuple[str, ...] = FONTS) -> BarStyle:
    """A varied, realistic bar: pixel size 0.02-5 µm/px, a 'nice' length (1/2/2.5/5 x 10^k) of 8-30 %
    of the width, µm/um/nm/mm labels, 12-30 px text, light/dark, data bar or micrograph corners."""
    M, N = shape
    font = str(rng.choice(fonts))
    for _ in range(100):
        p = float(np.exp(rng.uniform(np.log(0.02), np.log(5.0))))
        frac = rng.uniform(0.08, 0.3)
        raw = frac * N * p  # µm
        k = math.floor(math.log10(raw))
        cands = [m * 10 ** k for m in _NICE if m * 10 ** k <= raw] or [10 ** k]
        value_um = float(cands[-1])
        if value_um / p >= 40:
            break
    if value_um < 1:
        value, unit = value_um * 1000, "nm"
    elif value_um >= 1000 or (value_um >= 100 and rng.random() < 0.25):
        value, unit = value_um / 1000, "mm"
    else:
        value = value_um
        unit = "µm" if has_micro(font) and rng.random() < 0.7 else "um"
    value = float(f"{value:.4g}")
    text_h = int(rng.integers(12, 31))
    databar = rng.random() < 0.5
    position = "databar" if databar and rng.random() < 0.6 else str(rng.choice(POSITIONS[1:]))
    H = int(max(text_h * 2.5, 0.08 * M)) if databar else 0
    thickness = int(rng.integers(3, max(4, min(16, text_h // 2 + 3))))
    mag = int(rng.choice([100, 200, 500, 1000, 2000, 5000]))
    return BarStyle(
        pixel_size_um=p, value=value, unit=unit, thickness_px=thickness,
        polarity=str(rng.choice(["light", "dark"])), position=position, font=font, text_height_px=text_h,
        label_side=str(rng.choice(["above", "below"])), space=bool(rng.random() < 0.75),
        backing_box=bool(position != "databar" and rng.random() < 0.35), end_ticks=bool(rng.random() < 0.3),
        databar_height_px=H, databar_polarity=str(rng.choice(["dark", "light"])),
        databar_text=str(rng.choice(_DATABAR_TEXTS)).format(mag=mag) if databar else "",
    )


def make_lab_micrograph(seed: int, *, base: np.ndarray | None = None, base_name: str = "synthetic",
                        shape: tuple[int, int] = (768, 1024), fonts: tuple[str, ...] = FONTS,
                        style: BarStyle | None = None) -> LabMicrograph:
    """A micrograph with a burned-in bar: ``base`` pixels, or a seeded :mod:`data.synthetic` scan."""
    rng = np.random.default_rng(seed)
    if base is None:
        from .synthetic import SyntheticConfig, make_synthetic_scan

        synth = make_synthetic_scan(SyntheticConfig(shape=tuple(shape), n_impurities=int(rng.integers(80, 300))),
                                    seed=int(rng.integers(0, 2**31 - 1)))
        base = synth.pixels
    st = style or random_bar_style(rng, base.shape, fonts=fonts)
    pixels, truth = burn_annotations(base, st)
    return LabMicrograph(pixels, truth, st, base_name)


def with_style(style: BarStyle, **changes) -> BarStyle:
    """``dataclasses.replace`` for a style (tests)."""
    return replace(style, **changes)
