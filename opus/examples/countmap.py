"""Count map of a FITS event list: the program behind the ``gammapy_maps`` job definition.

::

    python -m opus.examples.countmap --events events.fits --ra 83.63 --dec 22.01 \\
        --nxpix 400 --nypix 400 --binsz 0.02 --out count_map.fits --png count_map.png

The event list is a FITS binary table in an HDU named ``EVENTS`` (as in gamma-ray DL3 files) with
columns ``RA`` and ``DEC`` in degrees (ICRS).  The count map is a TAN (gnomonic) projection centred
on (RA, Dec), ``nxpix`` x ``nypix`` pixels of ``binsz`` degrees, with CRPIX at the map centre.
Pixel ``i`` (0-based) holds the events whose pixel coordinate ``p`` has ``floor(p + 0.5) == i``,
that is ``i - 0.5 <= p < i + 0.5``: every event inside the map is counted exactly once, and an
event on the boundary between two pixels goes to the upper one.

The map is written as an int32 primary image with the WCS and the keywords NEVENTS (events in the
map), TOTEVT (rows in the file), NINVALID (rows without a valid position) and OBJECT; the preview
is a PNG drawn with matplotlib.  Errors are one line on stderr and exit status 1.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from typing import Any, NoReturn

# numpy, astropy and matplotlib come with the optional "science" extra: imported where they are used,
# so that a missing one is the one-line error of main().  astropy has no type information, and the
# arrays go through its calls: all three are typed loosely here.
Array = Any  # a numpy.ndarray
Wcs = Any  # an astropy.wcs.WCS
Header = Any  # an astropy.io.fits.Header

MAX_PIXELS = 5000
_DEGREE_UNITS = {"", "deg", "degree", "degrees"}


class CountMapError(Exception):
    """A problem with the input or the arguments, reported as one line on stderr."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # one line, exit status 1 like every other error of this program
        raise CountMapError(message)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = _Parser(prog="countmap", description="Make a count map (FITS + PNG) from a FITS event list.")
    p.add_argument("--events", required=True, help="FITS event list (HDU EVENTS with RA, DEC columns)")
    p.add_argument("--ra", required=True, type=float, help="map centre, right ascension (deg)")
    p.add_argument("--dec", required=True, type=float, help="map centre, declination (deg)")
    p.add_argument("--nxpix", type=int, default=400, help="pixels along RA (default 400)")
    p.add_argument("--nypix", type=int, default=400, help="pixels along Dec (default 400)")
    p.add_argument("--binsz", type=float, default=0.02, help="pixel size (deg, default 0.02)")
    p.add_argument("--out", default="count_map.fits", help="output FITS image (default count_map.fits)")
    p.add_argument("--png", default="count_map.png", help="output PNG preview (default count_map.png)")
    args = p.parse_args(argv)
    if not math.isfinite(args.ra):
        raise CountMapError(f"RA {args.ra} is not a finite number")
    if not (math.isfinite(args.dec) and -90 <= args.dec <= 90):
        raise CountMapError(f"Dec {args.dec} is outside -90..90 degrees")
    for name in ("nxpix", "nypix"):
        value = getattr(args, name)
        if not 1 <= value <= MAX_PIXELS:
            raise CountMapError(f"{name} {value} is outside 1..{MAX_PIXELS}")
    if not (math.isfinite(args.binsz) and args.binsz > 0):
        raise CountMapError(f"binsz {args.binsz} must be a positive number of degrees")
    args.ra %= 360.0
    return args


def read_events(path: str) -> tuple[Array, Array, Header]:
    """(ra, dec, header of EVENTS) in degrees, as float64 arrays."""
    import numpy as np
    from astropy.io import fits

    name = os.path.basename(path)
    if not os.path.isfile(path):
        raise CountMapError(f"event list {name!r} not found")
    try:
        hdul = fits.open(path, memmap=False)
    except Exception as exc:  # noqa: BLE001 -- astropy raises OSError, ValueError, ... for non-FITS files
        raise CountMapError(f"event list {name!r} is not a readable FITS file ({exc})") from None
    with hdul:
        try:
            hdu = hdul["EVENTS"]
        except KeyError:
            names = ", ".join(h.name or "(unnamed)" for h in hdul)
            raise CountMapError(f"event list {name!r} has no HDU named EVENTS (HDUs: {names})") from None
        if not isinstance(hdu, fits.BinTableHDU):
            raise CountMapError(f"HDU EVENTS of {name!r} is not a binary table")
        columns = {c.name.upper(): c for c in hdu.columns}
        coords = []
        for wanted in ("RA", "DEC"):
            col = columns.get(wanted)
            if col is None:
                have = ", ".join(c.name for c in hdu.columns) or "none"
                raise CountMapError(f"HDU EVENTS of {name!r} has no {wanted} column (columns: {have})")
            unit = (col.unit or "").strip().lower()
            if unit not in _DEGREE_UNITS:
                raise CountMapError(f"column {col.name} of {name!r} is in {col.unit!r}; degrees are needed")
            try:
                values = np.asarray(hdu.data[col.name] if hdu.data is not None else [], dtype=np.float64)
            except (TypeError, ValueError):
                raise CountMapError(f"column {col.name} of {name!r} is not numeric") from None
            if values.ndim != 1:
                raise CountMapError(f"column {col.name} of {name!r} has {values.ndim - 1}-d cells; one "
                                    "number per event is needed")
            coords.append(values)
        return coords[0], coords[1], hdu.header.copy()


def make_wcs(ra: float, dec: float, nxpix: int, nypix: int, binsz: float) -> Wcs:
    from astropy.wcs import WCS

    wcs = WCS(naxis=2)
    wcs.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    wcs.wcs.cunit = ["deg", "deg"]
    wcs.wcs.crval = [ra, dec]
    wcs.wcs.cdelt = [-binsz, binsz]
    wcs.wcs.crpix = [(nxpix + 1) / 2.0, (nypix + 1) / 2.0]  # FITS pixels are 1-based: the map centre
    wcs.wcs.radesys = "ICRS"
    wcs.pixel_shape = (nxpix, nypix)
    return wcs


def count_events(ra: Array, dec: Array, wcs: Wcs, nxpix: int, nypix: int) -> tuple[Array, int]:
    """(int32 image of shape (nypix, nxpix), number of events with a valid position)."""
    import numpy as np

    valid = _valid_positions(ra, dec)
    ra, dec = ra[valid], dec[valid]
    # The TAN projection only maps the hemisphere around the centre: leave out the other half.
    lon0, lat0 = np.radians(wcs.wcs.crval)
    lon, lat = np.radians(ra), np.radians(dec)
    cos_sep = np.sin(lat) * np.sin(lat0) + np.cos(lat) * np.cos(lat0) * np.cos(lon - lon0)
    front = cos_sep > 1e-10
    counts = np.zeros((nypix, nxpix), dtype=np.int32)
    if front.any():
        x, y = wcs.world_to_pixel_values(ra[front], dec[front])  # 0-based, pixel centres at integers
        with np.errstate(invalid="ignore"):
            # Rounding to 1e-9 pixel first puts an event on a pixel boundary (up to the projection's
            # rounding error) in the upper pixel, as documented, instead of on either side at random.
            ix = np.floor(np.round(np.asarray(x), 9) + 0.5)
            iy = np.floor(np.round(np.asarray(y), 9) + 0.5)
            inside = (ix >= 0) & (ix < nxpix) & (iy >= 0) & (iy < nypix)
        np.add.at(counts, (iy[inside].astype(np.intp), ix[inside].astype(np.intp)), 1)
    return counts, int(valid.sum())


def write_fits(path: str, counts: Array, wcs: Wcs, *, total: int, invalid: int, obj: str, events_name: str,
               binsz: float) -> None:
    from astropy.io import fits

    header = wcs.to_header()
    if header.get("MJDREF") == 0:  # astropy's placeholder: this map has no time axis
        del header["MJDREF"]
    header["BUNIT"] = ("count", "events per pixel")
    header["NEVENTS"] = (int(counts.sum()), "events counted in this map")
    header["TOTEVT"] = (total, "rows in the event list")
    header["NINVALID"] = (invalid, "rows without a valid RA/DEC")
    header["BINSZ"] = (binsz, "[deg] pixel size")
    header["OBJECT"] = (obj, "target, or the map centre")
    header["EVFILE"] = (events_name[:60], "event list")
    header["CREATOR"] = ("opus.examples.countmap", "OPUS example count-map program")
    fits.PrimaryHDU(data=counts, header=header).writeto(path, overwrite=True)


def write_png(path: str, counts: Array, wcs: Wcs, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig = plt.figure(figsize=(7, 6), dpi=100)
    try:
        ax = fig.add_subplot(projection=wcs)
        image = ax.imshow(counts, origin="lower", cmap="viridis", interpolation="nearest")
        ax.set_xlabel("Right ascension (ICRS)")
        ax.set_ylabel("Declination (ICRS)")
        ax.coords.grid(color="white", alpha=0.3, linestyle="dotted")
        shrink = min(1.0, max(0.3, counts.shape[0] / counts.shape[1]))  # about the image's height
        fig.colorbar(image, ax=ax, label="counts per pixel", shrink=shrink)
        ax.set_title(title, fontsize=10)
        fig.savefig(path, format="png")
    finally:
        plt.close(fig)


def run(args: argparse.Namespace) -> int:
    ra, dec, ev_header = read_events(args.events)
    wcs = make_wcs(args.ra, args.dec, args.nxpix, args.nypix, args.binsz)
    counts, n_valid = count_events(ra, dec, wcs, args.nxpix, args.nypix)
    total = len(ra)
    n_map = int(counts.sum())
    obj = str(ev_header.get("OBJECT", "") or "").strip() or f"RA={args.ra:.5f} Dec={args.dec:+.5f}"
    events_name = os.path.basename(args.events)
    write_fits(args.out, counts, wcs, total=total, invalid=total - n_valid, obj=obj,
               events_name=events_name, binsz=args.binsz)
    title = (f"{obj}: {n_map} of {total} events\n"
             f"centre RA {args.ra:.4f}°, Dec {args.dec:+.4f}°, {args.nxpix}×{args.nypix} px of {args.binsz:g}°")
    write_png(args.png, counts, wcs, title)
    print(f"count map {args.nxpix}x{args.nypix} of {args.binsz:g} deg at RA {args.ra:.5f}, "
          f"Dec {args.dec:+.5f}: {n_map} of {total} events ({total - n_valid} without a valid position)")
    print(f"wrote {args.out} and {args.png}")
    if n_map == 0 and n_valid > 0:  # an empty map is a result, but most likely not the one wanted
        print(f"countmap: warning: none of the {n_valid} events fall in this map: {_extent(ra, dec)}; "
              f"the map is centred on RA {args.ra:.4f}, Dec {args.dec:+.4f} (give RA and Dec of your "
              "target)", file=sys.stderr)
    return 0


def _valid_positions(ra: Array, dec: Array) -> Array:
    """Which events have a position: finite, and a declination within ±90°."""
    import numpy as np

    return np.isfinite(ra) & np.isfinite(dec) & (np.abs(dec) <= 90)


def _extent(ra: Array, dec: Array) -> str:
    """Where the events are, in words (RA's wrap-around at 0/360 aside)."""
    valid = _valid_positions(ra, dec)
    ra, dec = ra[valid], dec[valid]
    return (f"they lie at RA {float(ra.min()):.2f} to {float(ra.max()):.2f}, "
            f"Dec {float(dec.min()):+.2f} to {float(dec.max()):+.2f}")


def main(argv: list[str] | None = None) -> int:
    try:
        return run(parse_args(argv))
    except CountMapError as exc:
        print(f"countmap: error: {exc}", file=sys.stderr)
        return 1
    except ImportError as exc:
        print(f"countmap: error: {exc.name or exc} is missing; install OPUS with the science extra "
              "(pip install -e '.[science]')", file=sys.stderr)
        return 1
    except OSError as exc:  # writing the outputs
        print(f"countmap: error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
