"""Synthetic person names and the spellings a listed person may use, one class at a time, with
near-miss negatives (other people whose names differ in one token). Made-up combinations only;
used by tests/test_names.py and bench/score_names.py. Deterministic for a given seed."""

from __future__ import annotations

import random
import re
from collections.abc import Callable
from dataclasses import dataclass


def _words(text: str) -> list[str]:
    return text.split()



GIVEN = tuple(_words(
    "Dmitar Dmitri Ivan Sergei Aleksandr Mikhail Vladimir Yuri Oleg Boris Nikolai Pavel Andrei "
    "Muhammad Ahmad Yusuf Omar Osama Khalid Hamid Tariq Samir Nadim Karim Farrukh Rustam Timur "
    "Ruslan Abdul Hassan Hussein Ibrahim Jamal Walid Zaid Faisal Mustafa Rashid Bilal Anwar "
    "Jurgen Dieter Klaus Wolfgang Helmut Stefan Lukas Matthias Sebastian Friedrich Konstantin "
    "Marco Giovanni Luca Alessandro Pietro Hernan Rogelio Esteban Carlos Miguel Alejandro Jorge "
    "Chen Wei Guang Ming Jian Hui Kwang Daniel Jonathan Peter Thomas Michael Robert William "
    "Chibuzor Emeka Oluwaseun Thandiwe Kwame Kofi Halina Ingeborg Parvin Camila Andrea Maria "
    "Elena Olga Natalia Svetlana Irina Fatima Aisha Leila Zahra Somkiat Agus Budi Vu Thanh Loc "
    "Boyan Stoyan Goran Milan Dragan Nenad Zoran Predrag Slobodan Miroslav Tomasz Piotr "
    "Krzysztof Jan Pieter Hendrik Willem Anders Lars Henrik Magnus Erik Bjorn Soren Mehmet "
    "Mustafa Emre Murat Kemal Burak Gokhan Arash Reza Mehdi Hossein Ali Jafar Kamran Babak "
    "Dariush"
))
SURNAMES = tuple(_words(
    "Voranko Qadirah Trellavini Okonwadi Halvorseth Kramm Nguyen Bektasov Villalba Duarte "
    "Rahmanzadeh Stoykanov Lim Assefi Morrell Barrani Przyborska Ocampo Khoureiban Wirayudha "
    "Falkenrath Mbatha Osei Charoenwattana Azimov Rashed Brito Rosa Karimov Abdullah Jaber "
    "Petrov Ivanov Sidorov Smirnov Kuznetsov Popov Sokolov Lebedev Kozlov Novikov Morozov "
    "Volkov Solovyov Vasiliev Zaitsev Pavlov Semenov Golubev Vinogradov Bogdanov Vorobyov "
    "Fedorov Mikhailov Belyaev Tarasov Belov Komarov Orlov Kiselev Makarov Andreev Kovalev "
    "Ilyin Gusev Titov Kuzmin Kudryavtsev Baranov Kulikov Alekseev Stepanov Yakovlev Sorokin "
    "Sergeev Romanov Zakharov Borisov Korolev Gerasimov Ponomarev Grigoriev Lazarev Medvedev "
    "Ershov Nikitin Sobolev Ryabov Polyakov Tsvetkov Danilov Zhukov Frolov Zhuravlev Nikolaev "
    "Krylov Maksimov Sidorenko Osipov Belousov Fedotov Dorofeev Egorov Matveev Bobrov Dmitriev "
    "Kalinin Anisimov Petukhov Antonov Haddad Khoury Mansour Nasser Saleh Hamdan Darwish Qasim "
    "Rahman Hakimi Tehrani Mousavi Hosseini Rezaei Moradi Jafari Karimi Sadeghi Rostami Mueller "
    "Schmidt Schneider Fischer Weber Meyer Wagner Becker Schulz Hoffmann Koch Richter Klein "
    "Wolf Schroeder Neumann Schwarz Zimmermann Braun Krueger Hofmann Hartmann Lange Schmitt "
    "Werner Krause Meier Lehmann Rossi Russo Ferrari Esposito Bianchi Romano Colombo Ricci "
    "Marino Greco Bruno Gallo Conti Costa Giordano Mancini Garcia Rodriguez Martinez Hernandez "
    "Lopez Gonzalez Perez Sanchez Ramirez Torres Flores Rivera Gomez Diaz Cruz Morales Reyes "
    "Gutierrez Ortiz Jimenez Ruiz Alvarez Castillo Romero Vargas Wang Zhang Liu Yang Huang Zhao "
    "Zhou Xu Sun Ma Zhu Hu Guo Lin He Gao Luo Zheng Liang Kowalski Nowak Wisniewski Wojcik "
    "Kowalczyk Kaminski Lewandowski Zielinski Szymanski Wozniak Dabrowski Jankovic Petrovic "
    "Nikolic Markovic Djordjevic Stojanovic Ilic Stankovic Pavlovic Milosevic Yilmaz Kaya Demir "
    "Sahin Celik Yildiz Yildirim Ozturk Aydin Ozdemir Arslan Dogan Kilic Aslan Okafor Adeyemi "
    "Mensah Owusu Boateng Nkosi Dlamini Ndlovu Mahlangu Banda Phiri Mwangi Otieno"
))
# listed spellings with special letters, and the ASCII forms clients type
SPECIAL = (
    ("Jürgen", ("Juergen", "Jurgen")), ("Müller", ("Mueller", "Muller")),
    ("Strauß", ("Strauss", "Straus")), ("Łukasz", ("Lukasz",)), ("Wróbel", ("Wrobel",)),
    ("Đorđe", ("Djordje", "Dorde")), ("Janković", ("Jankovic",)), ("Søren", ("Soren", "Soeren")),
    ("Ødegård", ("Odegard", "Oedegaard")), ("Yılmaz", ("Yilmaz",)), ("Şahin", ("Sahin",)),
    ("Gökhan", ("Gokhan", "Goekhan")), ("Dvořák", ("Dvorak",)), ("Çelik", ("Celik",)),
    ("Æsa", ("Aesa",)), ("François", ("Francois",)), ("José", ("Jose",)), ("Gómez", ("Gomez",)),
    ("Björn", ("Bjorn", "Bjoern")), ("Krüger", ("Krueger", "Kruger")), ("Schröder", ("Schroeder",)),
    ("Ñúñez", ("Nunez",)), ("Đurić", ("Djuric", "Duric")), ("Kowalczyk", ("Kowalczyk",)),
    ("Wiśniewski", ("Wisniewski",)), ("Żukowski", ("Zukowski",)), ("Hãn", ("Han",)),
)
TITLES = ("Dr.", "Mr", "Mrs.", "Sheikh", "Haji", "Prof.")
PARTICLES = ("al-", "el-", "bin ", "van ", "de ", "von ")
ZW = ("\u200b", "\u200c", "\u200d", "\ufeff", "\u00ad")
HOMOGLYPH = {"a": "а", "e": "е", "o": "о", "p": "р", "c": "с", "x": "х", "y": "у", "i": "і",
             "A": "А", "B": "В", "E": "Е", "K": "К", "M": "М", "H": "Н", "O": "О", "P": "Р",
             "C": "С", "T": "Т", "X": "Х", "N": "Ν", "Z": "Ζ"}
_CYR = [("shch", "щ"), ("kh", "х"), ("zh", "ж"), ("ch", "ч"), ("sh", "ш"), ("ts", "ц"), ("yu", "ю"),
        ("ya", "я"), ("a", "а"), ("b", "б"), ("v", "в"), ("g", "г"), ("d", "д"), ("e", "е"),
        ("z", "з"), ("i", "и"), ("y", "й"), ("k", "к"), ("l", "л"), ("m", "м"), ("n", "н"),
        ("o", "о"), ("p", "п"), ("r", "р"), ("s", "с"), ("t", "т"), ("u", "у"), ("f", "ф"),
        ("h", "х"), ("c", "к"), ("w", "в"), ("x", "кс"), ("j", "дж"), ("q", "к")]
_GRK = [("sch", "σ"), ("zh", "ζ"), ("th", "θ"), ("ps", "ψ"), ("ch", "τσ"), ("kh", "χ"),
        ("ou", "ου"), ("a", "α"), ("b", "μπ"), ("v", "β"),
        ("g", "γ"), ("d", "δ"), ("e", "ε"), ("z", "ζ"), ("i", "ι"), ("k", "κ"), ("l", "λ"),
        ("m", "μ"), ("n", "ν"), ("x", "ξ"), ("o", "ο"), ("p", "π"), ("r", "ρ"), ("s", "σ"),
        ("t", "τ"), ("y", "υ"), ("u", "ου"), ("f", "φ"), ("h", "χ"), ("c", "κ"), ("w", "β"),
        ("j", "τζ"), ("q", "κ")]
_PHONETIC = [("ph", "f"), ("f", "ph"), ("k", "c"), ("c", "k"), ("y", "i"), ("i", "y"), ("ou", "u"),
             ("u", "ou"), ("w", "v"), ("v", "w"), ("ee", "i"), ("kh", "h"), ("sh", "sch"), ("j", "dj"),
             ("ov", "off"), ("ev", "yev"), ("ss", "s"), ("s", "ss"), ("z", "s"), ("ck", "k"),
             ("x", "ks"), ("mm", "m"), ("dd", "d"), ("ll", "l"), ("tt", "t"), ("q", "k")]


@dataclass(frozen=True)
class Listed:
    entry_id: str
    names: tuple[str, ...]  # first the primary, then aliases; "SURNAME, Given" like OFAC


def _script(word: str, table: list[tuple[str, str]]) -> str:
    out, i, low = [], 0, word.lower()
    while i < len(low):
        for lat, other in table:
            if low.startswith(lat, i):
                out.append(other)
                i += len(lat)
                break
        else:
            out.append(low[i])
            i += 1
    text = "".join(out)
    if table is _GRK:
        text = text[:-1] + "ς" if text.endswith("σ") else text
    return text.capitalize()


def person(rng: random.Random) -> tuple[list[str], str]:
    """(given names, surname) of one made-up person."""
    given = [rng.choice(GIVEN)]
    if rng.random() < 0.4:
        given.append(rng.choice([g for g in GIVEN if g != given[0]]))
    surname = rng.choice(SURNAMES)
    if rng.random() < 0.1:
        surname = f"{surname}-{rng.choice(SURNAMES)}"
    return given, surname


def synthetic_list(n_entries: int, seed: int = 7) -> list[Listed]:
    """A list the size of a real one: `n_entries` people, ~half with one or two aliases (so
    12,000 entries hold ~18,000 names, OFAC SDN's size with its ALT file)."""
    rng = random.Random(seed)
    out = []
    for k in range(n_entries):
        given, surname = person(rng)
        names = [f"{surname.upper()}, {' '.join(given)}"]
        for _ in range(rng.choice((0, 0, 1, 1, 2)) if rng.random() < 0.75 else 0):
            g2, _s = person(rng)
            names.append(f"{surname.upper()}, {rng.choice((given[0], g2[0]))}")
        out.append(Listed(f"S{k}", tuple(names)))
    return out


def _given_surname(listed: str) -> tuple[list[str], str]:
    surname, _, given = listed.partition(", ")
    return given.split(), surname.title()


def _plain(given: list[str], surname: str) -> str:
    return " ".join([*given, surname])


def v_diacritics(rng: random.Random) -> tuple[str, str]:
    (a, a_ascii), (b, b_ascii) = rng.sample(SPECIAL, 2)
    listed = f"{b.upper()}, {a}"
    return listed, f"{rng.choice(a_ascii)} {rng.choice(b_ascii)}"


def v_script(given: list[str], surname: str, rng: random.Random) -> str:
    table = _CYR if rng.random() < 0.6 else _GRK
    return " ".join(_script(w, table) for w in _plain(given, surname).replace("-", " ").split())


def v_lookalike(given: list[str], surname: str, rng: random.Random) -> str:
    chars = list(_plain(given, surname))
    spots = [i for i, c in enumerate(chars) if c in HOMOGLYPH]
    for i in rng.sample(spots, min(len(spots), rng.randint(1, 4))):
        chars[i] = HOMOGLYPH[chars[i]]
    return "".join(chars)


def v_invisible(given: list[str], surname: str, rng: random.Random) -> str:
    words = []
    for w in _plain(given, surname).split():
        if len(w) > 2 and rng.random() < 0.7:
            k = rng.randint(1, len(w) - 1)
            w = w[:k] + rng.choice(ZW) + w[k:]
        words.append(w)
    return " ".join(words)


def v_joined_split(given: list[str], surname: str, rng: random.Random) -> str:
    if len(given) > 1:  # "Guang Ming" -> "Guangming"
        return f"{''.join(given).capitalize()} {surname}"
    if "-" in surname:  # "Müller-Sanchez" -> "MullerSanchez" / "MULLERSANCHEZ"
        joined = surname.replace("-", "")
        return f"{given[0]} {joined if rng.random() < 0.5 else joined.upper()}"
    w = surname if len(surname) >= 6 else given[0]
    k = len(w) // 2
    split = f"{w[:k]} {w[k:].capitalize()}"
    return f"{given[0]} {split}" if w is surname else f"{split} {surname}"


def v_initials(given: list[str], surname: str, rng: random.Random) -> str:
    if len(given) > 1:
        return f"{given[0]} {given[1][0]}. {surname}"
    return f"{given[0][0]}. {surname}" if rng.random() < 0.5 else f"{surname} {given[0][0]}"


def v_order(given: list[str], surname: str, rng: random.Random) -> str:
    if rng.random() < 0.5:
        return f"{surname.upper()} {' '.join(given)}"
    return f"{surname}, {' '.join(reversed(given))}"


def v_particles_titles(given: list[str], surname: str, rng: random.Random) -> str:
    name = _plain(given, surname)
    if rng.random() < 0.5:
        return f"{rng.choice(TITLES)} {name}"
    return f"{' '.join(given)} {rng.choice(PARTICLES)}{surname}"


def v_vowel_stripped(given: list[str], surname: str, rng: random.Random) -> str:
    def strip(w: str) -> str:
        return w[0] + re.sub(r"[aeiouAEIOU]", "", w[1:])

    return f"{strip(surname).upper()}, {' '.join(strip(g) for g in given)}"


def v_phonetic(given: list[str], surname: str, rng: random.Random) -> str:
    words = [*given, surname]
    k = rng.randrange(len(words))
    w = words[k].lower()
    options = [(a, b) for a, b in _PHONETIC if a in w[1:]]
    if not options and len(w) < 5:  # a vowel changed in a short name makes another name (Jan/Jon)
        k = max(range(len(words)), key=lambda i: len(words[i]))
        w = words[k].lower()
        options = [(a, b) for a, b in _PHONETIC if a in w[1:]]
    if options:
        a, b = rng.choice(options)
        at = w.index(a, 1)
        w = w[:at] + b + w[at + len(a) :]
    else:  # a vowel written differently (Mohammed / Muhammad)
        spots = [i for i, c in enumerate(w) if c in "aeiou" and i > 0]
        if spots:
            i = rng.choice(spots)
            w = w[:i] + rng.choice([v for v in "aeiou" if v != w[i]]) + w[i + 1 :]
    words[k] = w.capitalize()
    return " ".join(words)


def v_one_word(word: str, rng: random.Random) -> str:
    roll = rng.random()
    if roll < 0.4:
        return word.upper()
    if roll < 0.7:
        return f"FNU {word}"
    return f"{word} {word}"


Variant = Callable[[list[str], str, random.Random], str]
CLASSES: dict[str, Variant] = {
    "script": v_script, "lookalike": v_lookalike, "invisible": v_invisible,
    "joined_split": v_joined_split, "initials": v_initials, "order": v_order,
    "particles_titles": v_particles_titles, "vowel_stripped": v_vowel_stripped,
    "phonetic": v_phonetic,
}
ALL_CLASSES = ("diacritics", *CLASSES, "one_word")


def variants(listed: list[Listed], cls: str, n: int, seed: int = 11) -> list[tuple[str, str, str]]:
    """`n` (listed name, query, entry id) of class `cls`; diacritics and one-word variants bring
    their own listing (entry id "" -> add it to the list under test, see `extra_listings`)."""
    rng = random.Random(f"{seed}:{cls}")
    out = []
    for _ in range(n):
        if cls == "diacritics":
            name, query = v_diacritics(rng)
            out.append((name, query, ""))
            continue
        if cls == "one_word":
            word = rng.choice(SURNAMES) + rng.choice(("ullah", "anto", "ardi", "iman", "ono"))
            out.append((word.upper(), v_one_word(word, rng), ""))
            continue
        entry = rng.choice(listed)
        given, surname = _given_surname(entry.names[0])
        if cls == "joined_split" and len(given) < 2 and "-" not in surname and rng.random() < 0.5:
            continue_entry = [e for e in listed[:2000] if len(_given_surname(e.names[0])[0]) > 1]
            entry = rng.choice(continue_entry)
            given, surname = _given_surname(entry.names[0])
        out.append((entry.names[0], CLASSES[cls](given, surname, rng), entry.entry_id))
    return out


def near_misses(listed: list[Listed], n: int, seed: int = 13) -> list[tuple[str, str, str]]:
    """`n` (listed name, other person's name, entry id): one token replaced by a different name
    of similar shape (Omar for Osama, Martina for Maria), a relative (same surname, other given
    name), or the surname alone."""
    rng = random.Random(seed)
    out = []
    while len(out) < n:
        entry = rng.choice(listed)
        given, surname = _given_surname(entry.names[0])
        roll = rng.random()
        if roll < 0.1 and "-" not in surname:
            query = surname
        elif roll < 0.55:  # another given name, first letter kept when possible
            g0 = given[0]
            same = [g for g in GIVEN if g[0] == g0[0] and g.lower() != g0.lower()]
            other = rng.choice(same or [g for g in GIVEN if g != g0])
            query = _plain([other, *given[1:]], surname)
        else:  # another surname of similar length
            near = [s for s in SURNAMES if abs(len(s) - len(surname)) <= 2 and s != surname]
            near = near or [s for s in SURNAMES if s != surname]
            query = _plain(given, rng.choice(near))
        if any(query.lower() == _plain(*_given_surname(nm)).lower() for nm in entry.names):
            continue
        if any(
            {w.lower() for w in query.split()} <= {w.lower() for w in re.split(r"[ ,]+", nm)}
            and len(query.split()) > 1
            for nm in entry.names
        ):
            continue  # an alias of the same person, not a different one
        out.append((entry.names[0], query, entry.entry_id))
    return out
