"""A small synthetic sanctions list in the OFAC SDN CSV layout (made-up names, never real
listings), and the name variants a sanctioned person may open an account under.

Files (in `devtools/simulator/data/`, no header row, as OFAC publishes them):

- `sanctions_synthetic.csv` (as `sdn.csv`): ent_num, SDN_Name, SDN_Type, Program, Title,
  Call_Sign, Vess_type, Tonnage, GRT, Vess_flag, Vess_owner, Remarks. Text is double-quoted;
  an empty field is written `-0- `. Individuals are named "SURNAME, Given Names".
- `sanctions_synthetic_alt.csv` (as `alt.csv`): ent_num, alt_num, alt_type, alt_name,
  alt_remarks.
"""

from __future__ import annotations

import csv
import io
import random
import re
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from pathlib import Path

from risk_rules.settings import GEOIP_AUTO, RulesSettings

# package data (a wheel install has it too); the files are plain files in site-packages
DATA = Path(str(resources.files("devtools.simulator").joinpath("data")))
SDN_FILE = DATA / "sanctions_synthetic.csv"
ALT_FILE = DATA / "sanctions_synthetic_alt.csv"
GEOIP_FILE = DATA / "geoip_synthetic.csv"
NULL = "-0- "

# ent_num, name, type, program, title, remarks (individual: DOB; POB; nationality), aliases
_ENTRIES: tuple[tuple[int, str, str, str, str, str, tuple[str, ...]], ...] = (
    (90001, "VORANKO, Dmitar Ilkovic", "individual", "SYN-EO1", "-",
     "DOB 14 Mar 1971; POB Limassol, Cyprus; nationality Cyprus; Gender Male; "
     "Passport KZ4471920 (Cyprus).", ("VORANKO, Dimitar", "WORANKO, Dmitri")),
    (90002, "AL-QADIRAH, Samir Fawwaz", "individual", "SYN-TER", "Financier",
     "DOB 02 Jul 1966; POB Dubai, United Arab Emirates; nationality United Arab Emirates; "
     "Gender Male.", ("AL QADIRA, Samir", "QADIRAH, Sameer Fawaz")),
    (90003, "TRELLAVINI, Marco Aurelio", "individual", "SYN-TCO", "-",
     "DOB 21 Nov 1979; POB Naples, Italy; nationality Italy; Gender Male.",
     ("TRELLAVINI, Marko",)),
    (90004, "OKONWADI, Chibuzor Emmanuel", "individual", "SYN-CYB", "-",
     "DOB 09 Jan 1988; POB Lagos, Nigeria; nationality Nigeria; Gender Male; "
     "Email Address chibuzor.okw@example.net.", ("OKONWADI, Chibu", "OKONWADDI, Chibuzor")),
    (90005, "HALVORSETH-KRAMM, Ingeborg", "individual", "SYN-EO1", "Director",
     "DOB 30 Apr 1962; POB Bergen, Norway; nationality Germany; Gender Female.",
     ("KRAMM, Inge",)),
    (90006, "NGUYEN THANH LOC, Vu", "individual", "SYN-TCO", "-",
     "DOB 17 Aug 1984; POB Hanoi, Vietnam; nationality Vietnam; Gender Male.",
     ("VU, Thanh Loc", "NGUYEN, Loc Thanh Vu")),
    (90007, "BEKTASOV, Ruslan Timurovich", "individual", "SYN-EO1", "-",
     "DOB 05 Feb 1975; POB Istanbul, Turkey; nationality Turkey; Gender Male.",
     ("BEKTASSOV, Ruslan", "BEKTAS, Ruslan")),
    (90008, "DUARTE VILLALBA, Hernan Esteban", "individual", "SYN-NARC", "-",
     "DOB 12 Dec 1969; POB Medellin, Colombia; nationality Colombia; Gender Male.",
     ("VILLALBA, Hernan", "DUARTE, Esteban")),
    (90009, "RAHMANZADEH, Parvin", "individual", "SYN-NPWMD", "Procurement agent",
     "DOB 28 Jun 1977; POB Dubai, United Arab Emirates; nationality United Arab Emirates; "
     "Gender Female.", ("RAHMANZADE, Parveen",)),
    (90010, "STOYKANOV, Boyan Petrov", "individual", "SYN-TCO", "-",
     "DOB 19 Sep 1981; POB Athens, Greece; nationality Greece; Gender Male.",
     ("STOIKANOV, Boian",)),
    (90011, "LIM KWANG HOE, Daniel", "individual", "SYN-CYB", "-",
     "DOB 03 Mar 1990; POB Kuala Lumpur, Malaysia; nationality Malaysia; Gender Male.",
     ("LIM, Daniel Kwang Hoe", "LIM, Kwang Hoe")),
    (90012, "ASSEFI-MORRELL, Jonathan Keir", "individual", "SYN-EO1", "-",
     "DOB 11 Oct 1973; POB London, United Kingdom; nationality United Kingdom; Gender Male.",
     ("MORRELL, Jon", "ASSEFI, Jonathan")),
    (90013, "EL-BARRANI, Youssef Karim", "individual", "SYN-TER", "-",
     "DOB 25 May 1983; POB Cairo, Egypt; nationality Egypt; Gender Male.",
     ("BARRANI, Yousef", "AL-BARRANI, Yusuf Karim")),
    (90014, "PRZYBORSKA, Halina Teodora", "individual", "SYN-TCO", "-",
     "DOB 07 Jan 1968; POB Warsaw, Poland; nationality Poland; Gender Female.",
     ("PRZYBORSKA, Halinka",)),
    (90015, "SANTIAGO OCAMPO, Rogelio", "individual", "SYN-NARC", "-",
     "DOB 15 Aug 1971; POB Mexico City, Mexico; nationality Mexico; Gender Male.",
     ("OCAMPO, Rogelio",)),
    (90016, "KHOUREIBAN, Nadim Elias", "individual", "SYN-EO1", "-",
     "DOB 20 Feb 1964; POB Limassol, Cyprus; nationality Cyprus; Gender Male.",
     ("KHOURIBAN, Nadeem",)),
    (90017, "WIRAYUDHA, Agus Permana", "individual", "SYN-CYB", "-",
     "DOB 29 Nov 1992; POB Jakarta, Indonesia; nationality Indonesia; Gender Male.",
     ("WIRAYUDA, Agus",)),
    (90018, "FALKENRATH, Dieter Konstantin", "individual", "SYN-EO1", "Managing Director",
     "DOB 08 Jun 1958; POB Hamburg, Germany; nationality Germany; Gender Male.",
     ("FALKENRATH, Konstantin",)),
    (90019, "MBATHA-OSEI, Thandiwe", "individual", "SYN-TCO", "-",
     "DOB 13 Apr 1986; POB Johannesburg, South Africa; nationality South Africa; Gender Female.",
     ("OSEI, Thandi",)),
    (90020, "CHAROENWATTANA, Somkiat", "individual", "SYN-TCO", "-",
     "DOB 01 Dec 1976; POB Bangkok, Thailand; nationality Thailand; Gender Male.",
     ("CHAROENWATANA, Somkiet",)),
    (90021, "AZIMOV-RASHED, Farrukh", "individual", "SYN-NPWMD", "-",
     "DOB 16 Jul 1980; POB Dubai, United Arab Emirates; nationality United Arab Emirates; "
     "Gender Male.", ("RASHED, Farrukh", "AZIMOV, Farukh")),
    (90022, "DE LA ROSA BRITO, Camila Andrea", "individual", "SYN-NARC", "-",
     "DOB 22 Mar 1991; POB Bogota, Colombia; nationality Colombia; Gender Female.",
     ("DE LA ROSA, Camila", "BRITO, Camila Andrea")),
    (90101, "NORTHGATE BRIDGE HOLDINGS LTD.", "-", "SYN-EO1", "-",
     "Registration Number HE 401927 (Cyprus); Linked To: VORANKO, Dmitar Ilkovic.",
     ("NORTHGATE BRIDGE HOLDINGS LIMITED",)),
    (90102, "SILVER CRESCENT GENERAL TRADING L.L.C.", "-", "SYN-TER", "-",
     "Dubai, United Arab Emirates; Linked To: AL-QADIRAH, Samir Fawwaz.",
     ("SILVER CRESCENT TRADING",)),
    (90103, "PALMERA LOGISTICA S.A. DE C.V.", "-", "SYN-NARC", "-",
     "Mexico City, Mexico; Linked To: SANTIAGO OCAMPO, Rogelio.", ()),
    (90104, "BLUEWAVE DIGITAL ASSETS FZE", "-", "SYN-CYB", "-",
     "Digital Currency Address - ETH 0x5e1d0c0ffee0000000000000000000000000a11e; "
     "Sharjah, United Arab Emirates.", ("BLUE WAVE DIGITAL",)),
    (90105, "KESTREL MARITIME SERVICES INC.", "-", "SYN-NPWMD", "-",
     "Majuro, Marshall Islands; Linked To: RAHMANZADEH, Parvin.", ()),
)


@dataclass(frozen=True, slots=True)
class SdnEntry:
    ent_num: int
    name: str  # "SURNAME, Given Names" for individuals
    sdn_type: str  # "individual" or "" (entity)
    program: str
    remarks: str
    aliases: tuple[str, ...] = field(default=())

    @property
    def individual(self) -> bool:
        return self.sdn_type == "individual"

    @property
    def dob(self) -> str:
        """YYYY-MM-DD from the remarks ("" when none)."""
        match = re.search(r"DOB (\d{2}) ([A-Z][a-z]{2}) (\d{4})", self.remarks)
        if match is None:
            return ""
        month = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov",
                 "Dec").index(match[2]) + 1
        return f"{match[3]}-{month:02d}-{match[1]}"

    @property
    def nationality(self) -> str:
        match = re.search(r"nationality ([^;.]+)", self.remarks)
        return match[1].strip() if match else ""

    def given_and_surname(self) -> tuple[str, str]:
        surname, _, given = self.name.partition(", ")
        return given.strip(), surname.strip().title()


def _q(value: str) -> str:
    return NULL if value in ("", "-") else '"' + value.replace('"', '""') + '"'


def sdn_csv() -> str:
    """The synthetic list as OFAC's sdn.csv lays it out (no header)."""
    lines = []
    for ent, name, kind, program, title, remarks, _ in _ENTRIES:
        fields = [str(ent), _q(name), _q(kind), _q(program), _q(title)] + [NULL] * 6 + [_q(remarks)]
        lines.append(",".join(fields))
    return "\n".join(lines) + "\n"


def alt_csv() -> str:
    """The aliases as OFAC's alt.csv lays them out (no header)."""
    lines = []
    alt_num = 7000
    for ent, _, _, _, _, _, aliases in _ENTRIES:
        for alias in aliases:
            alt_num += 1
            lines.append(",".join([str(ent), str(alt_num), _q("aka"), _q(alias), NULL]))
    return "\n".join(lines) + "\n"


def _read(text: str) -> list[list[str]]:
    rows = []
    for row in csv.reader(io.StringIO(text), skipinitialspace=False):
        if row:
            rows.append([NULL.strip() if c.strip() == NULL.strip() else c for c in row])
    return rows


@lru_cache(maxsize=1)
def load_list() -> tuple[SdnEntry, ...]:
    """The list as shipped in the data files."""
    aliases: dict[int, list[str]] = {}
    for row in _read(ALT_FILE.read_text(encoding="utf-8")):
        aliases.setdefault(int(row[0]), []).append(row[3])
    out = []
    for row in _read(SDN_FILE.read_text(encoding="utf-8")):
        kind = "" if row[2].strip() == NULL.strip() else row[2]
        out.append(SdnEntry(int(row[0]), row[1], kind, row[3], row[11],
                            tuple(aliases.get(int(row[0]), ()))))
    return tuple(out)


_TRANSLIT = {"Youssef": "Yusuf", "Yusuf": "Youssef", "Samir": "Sameer", "Dmitar": "Dmitri",
             "Nadim": "Nadeem", "Parvin": "Parveen", "Boyan": "Boian", "Hernan": "Hernán",
             "Rogelio": "Rogélio", "Farrukh": "Farukh", "Chibuzor": "Chibuzo",
             "Halina": "Halinka", "Somkiat": "Somkiet", "Thandiwe": "Thandi"}


def account_name_for(entry: SdnEntry, rng: random.Random) -> tuple[str, str, str]:
    """(first name, last name, match kind) a listed person might open an account under."""
    given, surname = entry.given_and_surname()
    roll = rng.random()
    if roll < 0.35:
        return given, surname, "exact"
    if roll < 0.55 and entry.aliases:
        alias = rng.choice(entry.aliases)
        a_sur, _, a_given = alias.partition(", ")
        return a_given.strip() or given, a_sur.strip().title(), "alias"
    if roll < 0.7:
        return surname, given, "reordered"
    words = given.split()
    first = _TRANSLIT.get(words[0], words[0])
    if first == words[0] and len(words) > 1:
        return words[0], surname, "partial"  # the middle name left out
    return " ".join([first, *words[1:]]), surname, "variant"


def with_simulated_reference(rules: RulesSettings) -> RulesSettings:
    """`rules` with the simulator's synthetic geo-IP plan and sanctions lists wherever it names
    none: the simulated world's addresses and sanctioned names are only found in these."""
    sanctions = rules.sanctions
    if not sanctions.named:
        sanctions = sanctions.model_copy(update={"ofac_sdn": str(SDN_FILE), "ofac_alt": str(ALT_FILE)})
    named_geoip = rules.geoip not in (None, GEOIP_AUTO)  # a file or a source chosen on purpose
    return rules.model_copy(update={"geoip": rules.geoip if named_geoip else str(GEOIP_FILE),
                                    "sanctions": sanctions})


def simulated_rules_section() -> dict[str, object]:
    """The `rules` keys naming the simulator's reference data by absolute path, for a script that
    builds its configuration from the example's YAML without `load_settings` (which would resolve
    the example's relative paths)."""
    return {"geoip": str(GEOIP_FILE),
            "sanctions": {"ofac_sdn": str(SDN_FILE), "ofac_alt": str(ALT_FILE)}}
