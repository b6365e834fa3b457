"""Make events.fits, the sample event list the README's walkthrough uploads (`copy`, `gammapy_maps`).

A simulated gamma-ray event list in the layout of a DL3 file, as far as `gammapy_maps` reads it: a
binary table HDU named EVENTS with columns RA and DEC (degrees, ICRS).  3,000 events: a source at the
Crab nebula's position (RA 83.63, Dec 22.01) on a flat background 2.5 degrees around it.  Fixed seed,
so the file is the same each time:

    .venv/bin/python examples/make_events.py examples/events.fits
"""

import sys

import numpy as np
from astropy.io import fits

RA, DEC = 83.63, 22.01


def main(path: str) -> None:
    rng = np.random.default_rng(13)
    source = rng.normal(0.0, 0.15, size=(1000, 2))
    background = rng.uniform(-2.5, 2.5, size=(2000, 2))
    offsets = np.vstack([source, background])
    ra = RA + offsets[:, 0] / np.cos(np.radians(DEC))
    dec = DEC + offsets[:, 1]
    events = fits.BinTableHDU.from_columns([
        fits.Column(name="RA", format="E", unit="deg", array=ra.astype(np.float32)),
        fits.Column(name="DEC", format="E", unit="deg", array=dec.astype(np.float32)),
    ], name="EVENTS")
    events.header["OBJECT"] = ("Crab (simulated)", "sample for the OPUS README")
    events.header["RA_OBJ"], events.header["DEC_OBJ"] = RA, DEC
    fits.HDUList([fits.PrimaryHDU(), events]).writeto(path, overwrite=True)


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "events.fits")
