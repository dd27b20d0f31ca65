#!/usr/bin/env python
"""Make a map-outline file (coastlines, borders, state lines, lakes) from Natural Earth.

Reads the Natural Earth 1:10m shapefiles (ne_10m_coastline, ne_10m_admin_0_boundary_lines_land,
ne_10m_admin_1_states_provinces_lines, ne_10m_lakes; .shp + .shx), cuts them to a lon/lat box,
simplifies them and writes the compact .npz that ``wxembed.outlines.outlines_for_grid`` reads.

The packaged files were made with:

    python scripts/make_outlines.py --naturalearth /work/shared/data/naturalearth \\
        --bbox -136 19 -59 56 --tolerance 0.02 --out src/wxembed/data/outlines_conus.npz
    python scripts/make_outlines.py --naturalearth /work/shared/data/naturalearth \\
        --bbox 17 57 36 71 --tolerance 0.02 --out src/wxembed/data/outlines_finland.npz

    python scripts/make_outlines.py --naturalearth /work/shared/data/naturalearth \
        --bbox world --tolerance 0.05 --out src/wxembed/data/outlines_world.npz

(-136 19 -59 56 is ``--bbox hrrr-mrms``: the HRRR CONUS grid and the MRMS domain, 1 degree
margin, rounded out to whole degrees; ``--bbox world`` is -180 -90 180 90: the file used for a
grid that no regional file covers.)
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

from wxembed.figures.outlines import KINDS, build_outlines, hrrr_mrms_bbox, save_outlines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--naturalearth",
        required=True,
        type=Path,
        help="folder with the Natural Earth 1:10m .shp/.shx files",
    )
    parser.add_argument(
        "--bbox",
        required=True,
        nargs="+",
        metavar="W S E N",
        help="lon/lat box: four numbers W S E N (degrees), 'hrrr-mrms' or 'world'",
    )
    parser.add_argument("--out", required=True, type=Path, help="output .npz file")
    parser.add_argument(
        "--tolerance",
        type=float,
        default=0.02,
        help="simplification tolerance in degrees (default 0.02)",
    )
    parser.add_argument(
        "--kinds",
        nargs="+",
        default=list(KINDS),
        choices=KINDS,
        help="which outlines to include (default: all)",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(message)s")

    if args.bbox == ["hrrr-mrms"]:
        bbox = hrrr_mrms_bbox()
    elif args.bbox == ["world"]:
        bbox = (-180.0, -90.0, 180.0, 90.0)
    elif len(args.bbox) == 4:
        try:
            bbox = tuple(float(v) for v in args.bbox)
        except ValueError:
            parser.error(f"--bbox takes four numbers W S E N, got {' '.join(args.bbox)}")
    else:
        parser.error(f"--bbox takes four numbers W S E N, 'hrrr-mrms' or 'world', got {args.bbox}")

    t0 = time.perf_counter()
    try:
        outlines = build_outlines(args.naturalearth, bbox, args.tolerance, kinds=args.kinds)
    except (FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    path = save_outlines(args.out, outlines, bbox=bbox, tolerance_deg=args.tolerance)
    for kind, lines in outlines.items():
        print(f"{kind:10s} {len(lines):6d} polylines {sum(len(p) for p in lines):8d} vertices")
    print(
        f"wrote {path} ({path.stat().st_size / 1024:.0f} KiB, bbox {bbox}, "
        f"tolerance {args.tolerance} deg) in {time.perf_counter() - t0:.1f} s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
