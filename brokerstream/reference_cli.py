"""`brokerstream reference load`: check downloaded sanctions lists and a geo-IP file in their
published formats and install them under the brokerstream home (docs/reference-data.md)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pipelines.reference import INSTALLED_NAMES, install, reference_dir
from risk_rules.reference import (
    Checked,
    ReferenceFormatError,
    check_eu,
    check_geoip,
    check_ofac_alt,
    check_ofac_sdn,
)

LOAD_HELP = (
    "Check each file in its published format (OFAC sdn.csv and alt.csv, the EU consolidated "
    "financial sanctions list CSV, a geo-IP .mmdb or CSV) and install them into "
    "<home>/reference, where the engine reads them when the configuration names no files "
    "(rules.sanctions.installed, rules.geoip: auto). A bad file installs nothing and is named "
    "with the row and the reason. Where to download each: docs/reference-data.md."
)


def cmd_load(args: argparse.Namespace) -> int:
    if not (args.ofac_sdn or args.ofac_alt or args.eu or args.geoip):
        print("brokerstream: give at least one of --ofac-sdn, --ofac-alt, --eu, --geoip",
              file=sys.stderr)
        return 2
    home = Path(args.home).expanduser() if args.home else None
    ref = reference_dir(home)
    checked: list[Checked] = []
    try:
        for given in (args.ofac_sdn, args.ofac_alt, args.eu, args.geoip):
            if given and not Path(given).is_file():
                raise ReferenceFormatError(f"{given}: no such file")
        sdn = None
        if args.ofac_sdn:
            sdn = check_ofac_sdn(args.ofac_sdn)
            checked.append(sdn)
        elif args.ofac_alt:  # the aliases must belong to the installed sdn.csv
            installed = ref / INSTALLED_NAMES["ofac_sdn"]
            if not installed.is_file():
                raise ReferenceFormatError(f"{args.ofac_alt}: --ofac-alt needs --ofac-sdn (no sdn.csv "
                                           f"is installed in {ref})")
            sdn = check_ofac_sdn(installed)
        if args.ofac_alt:
            checked.append(check_ofac_alt(args.ofac_alt, sdn))
        if args.eu:
            checked.append(check_eu(args.eu))
        if args.geoip:
            checked.append(check_geoip(args.geoip))
    except ReferenceFormatError as exc:
        print(f"brokerstream: refused, nothing installed: {exc}", file=sys.stderr)
        return 2
    stale_alt = ref / INSTALLED_NAMES["ofac_alt"]
    if args.ofac_sdn and not args.ofac_alt and stale_alt.is_file():
        stale_alt.unlink()  # the aliases of the previous sdn.csv
        print(f"removed {stale_alt} (it belonged to the sdn.csv replaced; pass --ofac-alt with it)")
    where, lines = install(checked, home)
    print(f"installed into {where}:")
    for line in lines:
        print(f"  {line}")
    print("the engine reads them at its next start; screen the client base against them now with "
          "`brokerstream sanctions rescreen`")
    return 0


def add_parser(sub: Any, add_config: Callable[[argparse.ArgumentParser], None]) -> None:
    p = sub.add_parser("reference", help="install sanctions lists and geo-IP data",
                       description="Reference data the rules read (docs/reference-data.md).")
    rsub = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    r = rsub.add_parser("load", help="check and install downloaded lists and a geo-IP file",
                        description=LOAD_HELP)
    r.add_argument("--ofac-sdn", metavar="sdn.csv", help="OFAC SDN list, CSV (sdn.csv)")
    r.add_argument("--ofac-alt", metavar="alt.csv", help="OFAC alternate names, CSV (alt.csv)")
    r.add_argument("--eu", metavar="eu.csv", help="EU consolidated financial sanctions list, CSV")
    r.add_argument("--geoip", metavar="FILE", help="geo-IP: a MaxMind DB (.mmdb) or a CSV "
                   "network,country,city,latitude,longitude,kind")
    r.add_argument("--home", metavar="DIR", help="brokerstream home to install into "
                   "(default: $BROKERSTREAM_HOME or ~/.local/share/brokerstream)")
    r.set_defaults(func=cmd_load)
