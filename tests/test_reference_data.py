"""Reference data: format checks of the published list layouts, `brokerstream reference load`,
the installed lists and geo-IP in force, and the geo-IP sources (packaged, CSV with IPv6)."""

from __future__ import annotations

import json
import logging
import math
import shutil
from datetime import date
from pathlib import Path

import pytest

from brokerstream.cli import main
from pipelines.reference import load_geoip, load_screener, reference_dir, sanctions_files
from risk_rules.geoip import CsvGeoIP, GeoIPError, PackagedGeoIP, open_geoip
from risk_rules.reference import (
    ReferenceFormatError,
    check_eu,
    check_geoip,
    check_ofac_alt,
    check_ofac_sdn,
)
from risk_rules.sanctions import load_eu, load_ofac
from risk_rules.settings import RulesSettings

DATA = Path(__file__).resolve().parent / "data"
SDN, ALT, EU, GEO = (DATA / n for n in ("ofac_sdn_sample.csv", "ofac_alt_sample.csv", "eu_sample.csv",
                                         "geoip_sample.csv"))


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


# ------------------------------------------------------------------- the published layouts


def test_ofac_samples_in_the_published_layout() -> None:
    sdn = check_ofac_sdn(SDN)
    assert sdn.counts == {"entries": 5, "individuals": 3}  # the 0x1A end-of-file line is no row
    assert check_ofac_alt(ALT, sdn).counts == {"aliases": 5}
    entries = {e.entry_id: e for e in load_ofac(SDN, ALT)}
    assert sorted(entries) == ["7001", "7002", "7004"]  # individuals only
    assert entries["7002"].names == ["Yusef Abdelmalik QARRADI", "Yousef AL-QARRADI",
                                     "Yusuf Abd al-Malik QARADI"]
    assert entries["7002"].dobs == {date(1971, 9, 11), date(1972, 9, 11)}
    assert entries["7002"].program == "SDGT] [IRGC"


def test_eu_sample_in_the_fsf_layout() -> None:
    assert check_eu(EU).counts == {"entities": 3, "persons": 2, "name rows": 4}
    entries = {e.entry_id: e for e in load_eu(EU)}
    assert entries["900101"].names == ["Jürgen Müller-Strauß", "Юрген Мюллер-Штраус"]
    assert entries["900101"].dobs == {date(1963, 4, 9)}  # from its own birth-date row
    assert "900303" not in entries  # an enterprise


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ('7001,"VARNAKOVA, Ilsena","individual","SDGT",-0- \n', "row 1: 5 columns, the SDN layout has 12"),
        ('x7,"A, B","individual","SDGT",-0- ,-0- ,-0- ,-0- ,-0- ,-0- ,-0- ,-0- \n',
         "row 1: ent_num 'x7' is not a number"),
        ('7,"A, B","person","SDGT",-0- ,-0- ,-0- ,-0- ,-0- ,-0- ,-0- ,-0- \n',
         "row 1: SDN_Type 'person' is not individual"),
        ("", "row 1: the file has no rows"),
    ],
)
def test_bad_sdn_file_named_with_row_and_reason(tmp_path: Path, text: str, reason: str) -> None:
    bad = _write(tmp_path / "sdn.csv", text)
    with pytest.raises(ReferenceFormatError) as err:
        check_ofac_sdn(bad)
    assert str(err.value).startswith(f"{bad}: {reason}")
    assert "\n" not in str(err.value)


def test_bad_row_deep_in_a_good_file(tmp_path: Path) -> None:
    lines = SDN.read_text(encoding="utf-8").splitlines()
    lines.insert(3, '7010,"","individual","SDGT",-0- ,-0- ,-0- ,-0- ,-0- ,-0- ,-0- ,-0- ')
    bad = _write(tmp_path / "sdn.csv", "\n".join(lines) + "\n")
    with pytest.raises(ReferenceFormatError, match=r"sdn.csv: row 4: SDN_Name is empty$"):
        check_ofac_sdn(bad)


def test_alt_file_of_another_sdn_file_refused(tmp_path: Path) -> None:
    other = _write(tmp_path / "sdn.csv",
                   '1,"OTHER, Person","individual","X",-0- ,-0- ,-0- ,-0- ,-0- ,-0- ,-0- ,-0- \n')
    with pytest.raises(ReferenceFormatError, match="no alias belongs to an entry of"):
        check_ofac_alt(ALT, check_ofac_sdn(other))
    with pytest.raises(ReferenceFormatError, match=r"row 1: alt_type 'also' is not aka, fka or nka"):
        check_ofac_alt(_write(tmp_path / "alt.csv", '7001,1,"also","X Y",-0- \n'))


def test_eu_file_in_another_layout_refused(tmp_path: Path) -> None:
    comma = _write(tmp_path / "eu.csv", EU.read_text(encoding="utf-8").replace(";", ","))
    with pytest.raises(ReferenceFormatError, match=r"eu.csv: row 1: not the EU consolidated list CSV"):
        check_eu(comma)
    lines = EU.read_text(encoding="utf-8").splitlines()
    lines[2] = lines[2].replace(";P;person;", ";X;robot;")
    with pytest.raises(ReferenceFormatError, match=r"eu.csv: row 3: subject type"):
        check_eu(_write(tmp_path / "eu.csv", "\n".join(lines)))


# ------------------------------------------------------------------- geo-IP


def test_csv_geoip_reads_ipv4_and_ipv6() -> None:
    geo = CsvGeoIP(GEO)
    assert geo.rows == 4
    assert geo("81.2.69.10").city == "London"  # type: ignore[union-attr]
    assert geo("81.2.69.130").kind == "mobile"  # the longer prefix wins  # type: ignore[union-attr]
    v6 = geo("2001:db8::1")
    assert v6 is not None and (v6.country, v6.kind, v6.located) == ("DE", "hosting", True)
    assert geo("2a02:f00:1::5").country == "NL"  # type: ignore[union-attr]
    assert geo("10.1.2.3") is None and geo("not an address") is None


@pytest.mark.parametrize(
    ("row", "reason"),
    [
        ("2001:db8::zz/32,DE,Berlin,52.5,13.4,", "row 3: network:"),
        ("81.2.70.0/24,GBR,London,51.5,-0.1,", "row 3: country 'GBR' is not an ISO 3166 alpha-2 code"),
        ("81.2.70.0/24,GB,London,north,-0.1,", "row 3: latitude/longitude 'north','-0.1' are not numbers"),
        ("81.2.70.0/24,GB,London,51.5,-0.1,office", "row 3: kind 'office' is not one of"),
    ],
)
def test_bad_geoip_row_is_one_line_naming_the_row(tmp_path: Path, row: str, reason: str) -> None:
    path = _write(tmp_path / "geo.csv", "network,country,city,latitude,longitude,kind\n"
                  "81.2.69.0/24,GB,London,51.51,-0.13,residential\n" + row + "\n")
    with pytest.raises(GeoIPError) as err:
        CsvGeoIP(path)
    assert str(err.value).startswith(f"{path}: {reason}") and "\n" not in str(err.value)


def test_mmdb_geoip_reads_city_coordinates_and_kind(tmp_path: Path) -> None:
    from mmdb_writer import MMDBWriter
    from netaddr import IPSet

    writer = MMDBWriter(ip_version=6, database_type="GeoIP2-City", ipv4_compatible=True)
    writer.insert_network(IPSet(["81.2.69.0/24"]), {
        "country": {"iso_code": "GB"}, "city": {"names": {"en": "London"}},
        "location": {"latitude": 51.51, "longitude": -0.13}, "traits": {"connection_type": "Cellular"}})
    writer.insert_network(IPSet(["2001:db8::/32"]), {
        "registered_country": {"iso_code": "DE"}, "traits": {"user_type": "hosting"}})
    path = tmp_path / "city.mmdb"
    writer.to_db_file(str(path))
    assert check_geoip(path).counts["nodes"] > 0
    geo = open_geoip(path)
    london = geo("81.2.69.40")
    assert london is not None and (london.country, london.city, london.kind) == ("GB", "London", "mobile")
    assert london.located and london.latitude == 51.51
    v6 = geo("2001:db8::7")
    assert v6 is not None and (v6.country, v6.kind, v6.located) == ("DE", "hosting", False)
    assert geo("8.8.8.8") is None and geo("nonsense") is None
    with pytest.raises(ReferenceFormatError, match="not a readable MaxMind DB file"):
        check_geoip(_write(tmp_path / "fake.mmdb", "not a database"))


def test_packaged_geoip_knows_ipv4_and_ipv6() -> None:
    geo = PackagedGeoIP()
    us4, us6 = geo("8.8.8.8"), geo("2001:4860:4860::8888")  # Google's public resolvers
    assert us4 is not None and us4.country == "US" and not us4.located and math.isnan(us4.latitude)
    assert us6 is not None and us6.country == "US"
    assert geo("10.0.0.1") is None and geo("nonsense") is None


def test_geoip_in_force(tmp_path: Path) -> None:
    packaged, line = load_geoip(RulesSettings(), tmp_path)  # default: auto, nothing installed
    assert isinstance(packaged, PackagedGeoIP) and "iptocc" in line
    assert load_geoip(RulesSettings(geoip="none"), tmp_path)[0] is None
    with pytest.raises(ValueError, match="installed, but no geo-IP file is installed"):
        load_geoip(RulesSettings(geoip="installed"), tmp_path)
    reference_dir(tmp_path).mkdir(parents=True)
    shutil.copy(GEO, reference_dir(tmp_path) / "geoip.csv")
    installed, line = load_geoip(RulesSettings(), tmp_path)
    assert isinstance(installed, CsvGeoIP) and "4 networks" in line
    assert isinstance(load_geoip(RulesSettings(geoip="packaged"), tmp_path)[0], PackagedGeoIP)
    with pytest.raises(ValueError, match=r"rules.geoip: .*bad.csv: row 2"):
        load_geoip(RulesSettings(geoip=str(_write(tmp_path / "bad.csv",
                   "network,country,city,latitude,longitude,kind\n::1/999,DE,,1,1,\n"))), tmp_path)


# ------------------------------------------------------------------- lists in force


def test_no_lists_screens_nobody_and_says_so(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="brokerstream.reference"):
        screener, line = load_screener(RulesSettings(), tmp_path)
    assert screener is None and line == "no sanctions lists: nobody is screened"
    assert any("SANCTIONS SCREENING IS OFF" in r.getMessage() for r in caplog.records)
    assert RulesSettings().sanctions.ofac_sdn is None and RulesSettings().sanctions.eu is None


def test_named_lists_win_over_installed(tmp_path: Path) -> None:
    assert main(["reference", "load", "--eu", str(EU), "--home", str(tmp_path)]) == 0
    installed = sanctions_files(RulesSettings(), tmp_path)
    assert installed.origin.startswith("installed in") and installed.eu and not installed.ofac_sdn
    named = RulesSettings.model_validate({"sanctions": {"ofac_sdn": str(SDN)}})
    assert sanctions_files(named, tmp_path).origin == "configured"
    off = RulesSettings.model_validate({"sanctions": {"installed": False}})
    assert not sanctions_files(off, tmp_path).any
    screener, line = load_screener(RulesSettings(), tmp_path)
    assert screener is not None and "2 listed individuals" in line
    assert [m.entry.entry_id for m in screener.screen("Juergen Mueller-Strauss")] == ["900101"]


# ------------------------------------------------------------------- reference load


def test_reference_load_installs_and_reports(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc = main(["reference", "load", "--ofac-sdn", str(SDN), "--ofac-alt", str(ALT), "--eu", str(EU),
               "--geoip", str(GEO), "--home", str(tmp_path)])
    out = capsys.readouterr().out
    assert rc == 0
    ref = reference_dir(tmp_path)
    assert sorted(p.name for p in ref.iterdir()) == ["alt.csv", "eu.csv", "geoip.csv", "manifest.json",
                                                      "sdn.csv"]
    assert (ref / "sdn.csv").read_bytes() == SDN.read_bytes()
    assert "sdn.csv     5 entries, 3 individuals" in out and "geoip.csv   4 networks" in out
    manifest = json.loads((ref / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["alt.csv"]["counts"] == {"aliases": 5} and len(manifest["eu.csv"]["sha256"]) == 64
    screener, line = load_screener(RulesSettings(), tmp_path)
    assert screener is not None and "5 listed individuals" in line  # 3 OFAC + 2 EU
    assert [m.entry.entry_id for m in screener.screen("Yousef Al Qarradi")] == ["7002"]


def test_reference_load_refuses_a_bad_file_and_installs_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = _write(tmp_path / "eu.csv", "Entity_LogicalId,NameAlias_WholeName\n1,X\n")
    rc = main(["reference", "load", "--ofac-sdn", str(SDN), "--eu", str(bad), "--home", str(tmp_path)])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1
    assert err.startswith(f"brokerstream: refused, nothing installed: {bad}: row 1: not the EU")
    assert not reference_dir(tmp_path).exists()
    assert main(["reference", "load", "--ofac-alt", str(ALT), "--home", str(tmp_path)]) == 2
    assert "--ofac-alt needs --ofac-sdn" in capsys.readouterr().err
    assert main(["reference", "load", "--home", str(tmp_path)]) == 2


def test_new_sdn_without_alt_drops_the_old_aliases(tmp_path: Path) -> None:
    assert main(["reference", "load", "--ofac-sdn", str(SDN), "--ofac-alt", str(ALT),
                 "--home", str(tmp_path)]) == 0
    assert main(["reference", "load", "--ofac-sdn", str(SDN), "--home", str(tmp_path)]) == 0
    assert not (reference_dir(tmp_path) / "alt.csv").exists()
    # an alias file alone is checked against the installed sdn.csv
    assert main(["reference", "load", "--ofac-alt", str(ALT), "--home", str(tmp_path)]) == 0
    assert (reference_dir(tmp_path) / "alt.csv").exists()


def test_check_geoip_names_the_file() -> None:
    assert check_geoip(GEO).counts == {"networks": 4}
    with pytest.raises(ReferenceFormatError, match=r"sdn_sample.csv: row 1: the header lacks network"):
        check_geoip(SDN)
