"""The example science job gammapy_maps: the count-map program on its own, then as a job over HTTP."""

from __future__ import annotations

import io
import subprocess
import sys
import time

import pytest

np = pytest.importorskip("numpy")
fits = pytest.importorskip("astropy.io.fits")
pytest.importorskip("matplotlib")
from astropy.wcs import WCS
from matplotlib import image as mpimg

from opus.examples import countmap
# A map straddling RA 0/360, not square, so that a swapped axis or a lost wrap shows.
RA0, DEC0, NX, NY, BINSZ = 0.5, -30.0, 60, 40, 0.05
PNG_SHAPE = (600, 700)  # the preview's figure: 7 x 6 inches at 100 dpi


def synthetic_events(columns=("RA", "DEC"), n=3000, seed=20240611, obj="Synthetic source") -> bytes:
    """A DL3-like event list: most events around the map, some far outside, a few invalid rows."""
    rng = np.random.default_rng(seed)
    ra = RA0 + rng.uniform(-2.5, 2.5, n) / np.cos(np.radians(DEC0))  # wider than the map: 3 x 2 degrees
    dec = DEC0 + rng.uniform(-2, 2, n)
    ra[:20] = RA0 + 180.0  # the antipode and its neighbours project onto the map centre if not excluded
    dec[:20] = -DEC0 + rng.uniform(-0.01, 0.01, 20)
    ra[20:40] = rng.uniform(0, 360, 20)  # anywhere on the sky
    dec[20:40] = np.degrees(np.arcsin(rng.uniform(-1, 1, 20)))
    ra[40], dec[41] = np.nan, 95.0  # no valid position
    ra %= 360.0
    table = fits.BinTableHDU.from_columns([
        fits.Column(name=columns[0], format="D", unit="deg", array=ra),
        fits.Column(name=columns[1], format="D", unit="deg", array=dec),
        fits.Column(name="ENERGY", format="E", unit="TeV", array=rng.uniform(0.1, 10, n)),
    ], name="EVENTS")
    table.header["OBJECT"] = obj
    buf = io.BytesIO()
    fits.HDUList([fits.PrimaryHDU(), table]).writeto(buf)
    return buf.getvalue()


def expected_counts(data: bytes) -> np.ndarray:
    """The count map computed here, with the gnomonic formulas (no WCS library)."""
    with fits.open(io.BytesIO(data)) as hdul:
        cols = {c.upper(): c for c in hdul["EVENTS"].columns.names}
        ra = np.radians(np.asarray(hdul["EVENTS"].data[cols["RA"]], dtype=float))
        dec = np.radians(np.asarray(hdul["EVENTS"].data[cols["DEC"]], dtype=float))
    ok = np.isfinite(ra) & np.isfinite(dec) & (np.abs(dec) <= np.pi / 2)
    ra, dec = ra[ok], dec[ok]
    a0, d0 = np.radians(RA0), np.radians(DEC0)
    cos_c = np.sin(d0) * np.sin(dec) + np.cos(d0) * np.cos(dec) * np.cos(ra - a0)
    front = cos_c > 0
    ra, dec, cos_c = ra[front], dec[front], cos_c[front]
    xi = np.degrees(np.cos(dec) * np.sin(ra - a0) / cos_c)
    eta = np.degrees((np.cos(d0) * np.sin(dec) - np.sin(d0) * np.cos(dec) * np.cos(ra - a0)) / cos_c)
    x = (NX - 1) / 2 - xi / BINSZ  # 0-based pixel coordinates; CDELT1 < 0
    y = (NY - 1) / 2 + eta / BINSZ
    ix, iy = np.floor(x + 0.5).astype(int), np.floor(y + 0.5).astype(int)
    inside = (ix >= 0) & (ix < NX) & (iy >= 0) & (iy < NY)
    image = np.zeros((NY, NX), dtype=int)
    np.add.at(image, (iy[inside], ix[inside]), 1)
    return image


def check_count_map(data: bytes, events: bytes, obj: str) -> None:
    with fits.open(io.BytesIO(data)) as hdul:
        hdu = hdul[0]
        image, header = hdu.data, hdu.header
        assert image.shape == (NY, NX) and image.dtype.kind == "i" and image.dtype.itemsize == 4
        expected = expected_counts(events)
        assert 500 < expected.sum() < 2980  # the map holds some events, not all
        assert np.array_equal(image, expected)
        # the same with astropy's own pixel indexing, on a WCS built here
        wcs = WCS(naxis=2)
        wcs.wcs.ctype, wcs.wcs.crval = ["RA---TAN", "DEC--TAN"], [RA0, DEC0]
        wcs.wcs.cdelt, wcs.wcs.crpix = [-BINSZ, BINSZ], [(NX + 1) / 2, (NY + 1) / 2]
        with fits.open(io.BytesIO(events)) as ev:
            cols = {c.upper(): c for c in ev["EVENTS"].columns.names}
            ra = np.asarray(ev["EVENTS"].data[cols["RA"]], dtype=float)[42:]  # no antipodes, no bad rows
            dec = np.asarray(ev["EVENTS"].data[cols["DEC"]], dtype=float)[42:]
            total = len(ev["EVENTS"].data)
        row, col = wcs.world_to_array_index_values(ra, dec)
        in_map = int(((row >= 0) & (row < NY) & (col >= 0) & (col < NX)).sum())
        assert in_map == image.sum() == header["NEVENTS"]
        assert header["TOTEVT"] == total and header["NINVALID"] == 2
        assert header["OBJECT"] == obj and header["BUNIT"] == "count"
        assert (header["CTYPE1"], header["CTYPE2"]) == ("RA---TAN", "DEC--TAN")
        assert (header["CRVAL1"], header["CRVAL2"]) == pytest.approx((RA0, DEC0))
        assert (header["CDELT1"], header["CDELT2"]) == pytest.approx((-BINSZ, BINSZ))
        assert (header["CRPIX1"], header["CRPIX2"]) == pytest.approx(((NX + 1) / 2, (NY + 1) / 2))
        assert header["RADESYS"] == "ICRS"
        # the file's own WCS puts the map centre at the middle of the image
        x, y = WCS(header).world_to_pixel_values(RA0, DEC0)
        assert (x, y) == pytest.approx(((NX - 1) / 2, (NY - 1) / 2))


def check_png(data: bytes) -> None:
    assert data.startswith(b"\x89PNG\r\n\x1a\n")
    pixels = mpimg.imread(io.BytesIO(data), format="png")
    assert pixels.shape[:2] == PNG_SHAPE and pixels.shape[2] in (3, 4)
    assert pixels[..., :3].std() > 0.05  # not a blank image


def run_cli(tmp_path, events_path, *extra, ra=RA0, dec=DEC0, nx=NX, ny=NY, binsz=BINSZ):
    cmd = [sys.executable, "-m", "opus.examples.countmap", "--events", str(events_path),
           "--ra", str(ra), "--dec", str(dec), "--nxpix", str(nx), "--nypix", str(ny), "--binsz", str(binsz),
           "--out", "count_map.fits", "--png", "count_map.png", *extra]
    return subprocess.run(cmd, check=False, cwd=tmp_path, capture_output=True, text=True, timeout=60,
                          env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)})


def test_countmap_program_counts_every_event_inside_the_map_once(tmp_path):
    events = synthetic_events()
    (tmp_path / "events.fits").write_bytes(events)
    done = run_cli(tmp_path, "events.fits")
    assert done.returncode == 0, done.stderr
    assert "of 3000 events" in done.stdout
    check_count_map((tmp_path / "count_map.fits").read_bytes(), events, "Synthetic source")
    check_png((tmp_path / "count_map.png").read_bytes())


def test_an_empty_map_says_where_the_events_are(tmp_path):
    """A newcomer ran gammapy_maps on examples/events.fits (the Crab) at the form's default centre
    (the original OPUS's, PKS 2155-304): a COMPLETED, empty map, and only '0 of 3000 events' said so."""
    rng = np.random.default_rng(7)
    ra, dec = 83.63 + rng.normal(0, 0.2, 100), 22.01 + rng.normal(0, 0.2, 100)
    fits.HDUList([fits.PrimaryHDU(), fits.BinTableHDU.from_columns(
        [fits.Column(name="RA", format="D", unit="deg", array=ra), fits.Column(name="DEC", format="D", unit="deg", array=dec)],
        name="EVENTS")]).writeto(tmp_path / "crab.fits")
    done = run_cli(tmp_path, "crab.fits", ra=329.7169379, dec=-30.2255883)
    assert done.returncode == 0 and ": 0 of 100 events" in done.stdout
    (line,) = done.stderr.strip().splitlines()
    assert line.startswith(f"countmap: warning: none of the 100 events fall in this map: they lie at RA "
                           f"{ra.min():.2f} to {ra.max():.2f}, Dec {dec.min():+.2f} to {dec.max():+.2f}; ")
    assert line.endswith("the map is centred on RA 329.7169, Dec -30.2256 (give RA and Dec of your target)")
    assert run_cli(tmp_path, "crab.fits", ra=83.63, dec=22.01).stderr == ""  # no warning when the map has events


def test_countmap_program_reports_a_missing_events_hdu_in_one_line(tmp_path):
    table = fits.BinTableHDU.from_columns([fits.Column(name="RA", format="D", array=[1.0])], name="GTI")
    fits.HDUList([fits.PrimaryHDU(), table]).writeto(tmp_path / "no_events.fits")
    done = run_cli(tmp_path, "no_events.fits")
    assert done.returncode == 1
    assert done.stderr.strip().splitlines()[-1] == (
        "countmap: error: event list 'no_events.fits' has no HDU named EVENTS (HDUs: PRIMARY, GTI)")
    assert not (tmp_path / "count_map.fits").exists()


@pytest.mark.parametrize("setup, args, message", [
    ("missing", [], "event list 'events.fits' not found"),
    ("not_fits", [], "event list 'events.fits' is not a readable FITS file"),
    ("no_dec", [], "HDU EVENTS of 'events.fits' has no DEC column (columns: RA, ENERGY)"),
    ("radians", [], "column RA of 'events.fits' is in 'rad'; degrees are needed"),
    ("ok", ["--dec", "90.5"], "Dec 90.5 is outside -90..90 degrees"),
    ("ok", ["--binsz", "0"], "binsz 0.0 must be a positive number of degrees"),
    ("ok", ["--binsz", "nan"], "binsz nan must be a positive number of degrees"),
    ("ok", ["--nxpix", "0"], "nxpix 0 is outside 1..5000"),
    ("ok", ["--nypix", "5001"], "nypix 5001 is outside 1..5000"),
    ("ok", ["--ra", "east"], "argument --ra: invalid float value: 'east'"),
])
def test_countmap_program_rejects_bad_input_with_status_1(tmp_path, monkeypatch, capsys, setup, args, message):
    path = tmp_path / "events.fits"
    if setup == "not_fits":
        path.write_text("RA,DEC\n1,2\n")
    elif setup in ("no_dec", "radians", "ok"):
        cols = [fits.Column(name="RA", format="D", unit="rad" if setup == "radians" else "deg", array=[1.0]),
                fits.Column(name="ENERGY", format="E", array=[1.0])]
        if setup != "no_dec":
            cols.insert(1, fits.Column(name="DEC", format="D", unit="deg", array=[1.0]))
        fits.HDUList([fits.PrimaryHDU(), fits.BinTableHDU.from_columns(cols, name="EVENTS")]).writeto(path)
    monkeypatch.chdir(tmp_path)
    argv = ["--events", str(path), "--ra", "1", "--dec", "1", "--nxpix", "10", "--nypix", "10",
            "--binsz", "0.1", *args]
    assert countmap.main(argv) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith(f"countmap: error: {message}")
    assert not (tmp_path / "count_map.fits").exists()


def test_gammapy_maps_job_over_http(live):
    events = synthetic_events(columns=("ra", "dec"), obj="Upload")  # lower-case columns are accepted too
    params = {"RA": str(RA0), "Dec": str(DEC0), "nxpix": str(NX), "nypix": str(NY), "binsz": str(BINSZ)}
    t0 = time.monotonic()
    url = live.create("gammapy_maps", data=params, files={"events": ("events.fits", events, "application/fits")},
                      run=True)
    assert live.wait_final(url) == "COMPLETED", live.http.get(url + "/stderr").text
    elapsed = time.monotonic() - t0
    print(f"gammapy_maps job: {elapsed:.2f} s from creation to COMPLETED")
    assert live.http.get(url + "/parameters/events").content == events

    fits_r = live.http.get(url + "/results/count_map")
    assert fits_r.status_code == 200 and fits_r.headers["Content-Type"].startswith("application/fits")
    check_count_map(fits_r.content, events, "Upload")
    png_r = live.http.get(url + "/results/count_preview")
    assert png_r.status_code == 200 and png_r.headers["Content-Type"].startswith("image/png")
    check_png(png_r.content)
    xml = live.http.get(url).text
    assert f"{url}/results/count_map" in xml and f"{url}/results/count_preview" in xml


def test_gammapy_maps_job_reports_a_bad_upload_as_its_error(live):
    url = live.create("gammapy_maps", files={"events": ("table.csv", b"RA,DEC\n1,2\n", "text/csv")}, run=True)
    assert live.wait_final(url) == "ERROR"
    assert "event list 'events' is not a readable FITS file" in live.http.get(url + "/error").text
    r = live.http.post(url.rsplit("/", 1)[0], data={"binsz": "0"}, allow_redirects=False)
    assert r.status_code == 400 and "binsz" in r.text
