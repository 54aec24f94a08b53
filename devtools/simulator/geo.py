"""Synthetic reference data about people and places: countries (with a capital's coordinates,
a UTC offset and name pools), made-up IPv4 blocks per country (residential, mobile, hosting),
and name pools.

Nothing here is real attribution: the IP blocks are invented for the simulation (they avoid the
private, reserved and documentation ranges) and are published in
`devtools/simulator/data/geoip_synthetic.csv`, so a consumer of simulated traffic can
geolocate the addresses the simulator uses.
"""

from __future__ import annotations

import math
import random
import unicodedata
from dataclasses import dataclass, field

from connectors.countries import COUNTRY_NAMES


@dataclass(frozen=True, slots=True)
class Country:
    code: str
    lat: float
    lon: float
    tz: float  # hours from UTC (standard time; close enough for activity patterns)
    pool: str  # name pool
    w_global: float  # share of clients of an international (offshore) brand
    w_eu: float  # share of clients of an EU-regulated brand
    cities: tuple[str, ...]

    @property
    def name(self) -> str:
        return COUNTRY_NAMES[self.code]


COUNTRIES: tuple[Country, ...] = (
    Country("GB", 51.51, -0.13, 0, "en", 5, 1, ("London", "Manchester", "Birmingham", "Leeds")),
    Country("DE", 52.52, 13.40, 1, "de", 3, 20, ("Berlin", "Hamburg", "Munich", "Cologne", "Frankfurt")),
    Country("FR", 48.86, 2.35, 1, "fr", 2, 12, ("Paris", "Lyon", "Marseille", "Toulouse")),
    Country("IT", 41.90, 12.50, 1, "it", 2, 12, ("Rome", "Milan", "Naples", "Turin")),
    Country("ES", 40.42, -3.70, 1, "es", 2, 10, ("Madrid", "Barcelona", "Valencia", "Seville")),
    Country("NL", 52.37, 4.90, 1, "nl", 1, 6, ("Amsterdam", "Rotterdam", "Utrecht")),
    Country("AT", 48.21, 16.37, 1, "de", 0.5, 4, ("Vienna", "Graz", "Linz")),
    Country("PL", 52.23, 21.01, 1, "pl", 1, 7, ("Warsaw", "Krakow", "Wroclaw", "Gdansk")),
    Country("PT", 38.72, -9.14, 0, "pt", 0.5, 4, ("Lisbon", "Porto")),
    Country("BE", 50.85, 4.35, 1, "fr", 0.3, 3, ("Brussels", "Antwerp", "Liege")),
    Country("CH", 46.95, 7.45, 1, "de", 1, 2, ("Zurich", "Geneva", "Bern")),
    Country("SE", 59.33, 18.07, 1, "nordic", 0.5, 3, ("Stockholm", "Gothenburg")),
    Country("GR", 37.98, 23.73, 2, "gr", 0.3, 2, ("Athens", "Thessaloniki")),
    Country("CY", 35.17, 33.36, 2, "gr", 0.5, 1, ("Limassol", "Nicosia")),
    Country("AE", 25.20, 55.27, 4, "ar", 5, 0.5, ("Dubai", "Abu Dhabi", "Sharjah")),
    Country("SA", 24.71, 46.68, 3, "ar", 3, 0, ("Riyadh", "Jeddah")),
    Country("EG", 30.04, 31.24, 2, "ar", 2, 0, ("Cairo", "Alexandria")),
    Country("TR", 41.01, 28.98, 3, "tr", 3, 0.3, ("Istanbul", "Ankara", "Izmir")),
    Country("ZA", -26.20, 28.05, 2, "en", 4, 0, ("Johannesburg", "Cape Town", "Durban")),
    Country("NG", 6.52, 3.38, 1, "ng", 4, 0, ("Lagos", "Abuja")),
    Country("KE", -1.29, 36.82, 3, "ke", 2, 0, ("Nairobi", "Mombasa")),
    Country("IN", 19.08, 72.88, 5.5, "in", 6, 0, ("Mumbai", "Delhi", "Bangalore", "Chennai")),
    Country("MY", 3.14, 101.69, 8, "my", 5, 0, ("Kuala Lumpur", "Penang", "Johor Bahru")),
    Country("TH", 13.76, 100.50, 7, "th", 5, 0, ("Bangkok", "Chiang Mai")),
    Country("VN", 21.03, 105.85, 7, "vn", 5, 0, ("Hanoi", "Ho Chi Minh City", "Da Nang")),
    Country("ID", -6.21, 106.85, 7, "id", 4, 0, ("Jakarta", "Surabaya", "Bandung")),
    Country("PH", 14.60, 120.98, 8, "ph", 2, 0, ("Manila", "Cebu")),
    Country("SG", 1.35, 103.82, 8, "cn", 2, 0, ("Singapore",)),
    Country("HK", 22.32, 114.17, 8, "cn", 2, 0, ("Hong Kong",)),
    Country("TW", 25.03, 121.57, 8, "cn", 1, 0, ("Taipei", "Kaohsiung")),
    Country("JP", 35.68, 139.69, 9, "jp", 1, 0, ("Tokyo", "Osaka")),
    Country("KR", 37.57, 126.98, 9, "kr", 1, 0, ("Seoul", "Busan")),
    Country("AU", -33.87, 151.21, 11, "en", 3, 0, ("Sydney", "Melbourne", "Brisbane", "Perth")),
    Country("BR", -23.55, -46.63, -3, "pt", 4, 0, ("Sao Paulo", "Rio de Janeiro", "Belo Horizonte")),
    Country("MX", 19.43, -99.13, -6, "es", 3, 0, ("Mexico City", "Guadalajara", "Monterrey")),
    Country("CO", 4.71, -74.07, -5, "es", 3, 0, ("Bogota", "Medellin", "Cali")),
    Country("CL", -33.45, -70.67, -3, "es", 1.5, 0, ("Santiago", "Valparaiso")),
    Country("AR", -34.60, -58.38, -3, "es", 1.5, 0, ("Buenos Aires", "Cordoba")),
    Country("CA", 43.65, -79.38, -5, "en", 1, 0, ("Toronto", "Vancouver", "Montreal")),
    # Not client countries: where data centres and VPN exits are.
    Country("US", 40.71, -74.01, -5, "en", 0, 0, ("New York", "Chicago", "Ashburn")),
    # The simulator's high-risk jurisdictions (see HIGH_RISK_COUNTRIES): no ordinary client
    # comes from them; they appear only in the `high_risk_country` typology.
    Country("IR", 35.69, 51.39, 3.5, "fa", 0, 0, ("Tehran", "Mashhad", "Isfahan")),
    Country("KP", 39.04, 125.76, 9, "kr", 0, 0, ("Pyongyang",)),
    Country("MM", 16.87, 96.20, 6.5, "mm", 0, 0, ("Yangon", "Mandalay")),
    Country("SY", 33.51, 36.29, 3, "ar", 0, 0, ("Damascus", "Aleppo")),
    Country("YE", 15.37, 44.19, 3, "ar", 0, 0, ("Sanaa", "Aden")),
    Country("HT", 18.59, -72.31, -5, "fr", 0, 0, ("Port-au-Prince",)),
    Country("SS", 4.85, 31.58, 2, "ke", 0, 0, ("Juba",)),
)
BY_CODE: dict[str, Country] = {c.code: c for c in COUNTRIES}

# The simulator's list of high-risk jurisdictions, modelled on FATF's "call for action" list and
# a few jurisdictions under increased monitoring. Synthetic: it only says where the
# `high_risk_country` typology places clients, logins and payment instruments.
HIGH_RISK_COUNTRIES: tuple[str, ...] = ("IR", "KP", "MM", "SY", "YE", "HT", "SS")
HOSTING_COUNTRIES: tuple[str, ...] = ("US", "GB", "DE", "NL", "SG")

# -- names ---------------------------------------------------------------------------------------

NAMES: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "en": (("James", "Oliver", "Jack", "Harry", "George", "Thomas", "William", "Daniel", "Michael",
            "David", "Emma", "Olivia", "Amelia", "Sophie", "Charlotte", "Emily", "Grace", "Lucy",
            "Hannah", "Chloe", "Liam", "Noah", "Ryan", "Sarah", "Jessica"),
           ("Smith", "Jones", "Taylor", "Brown", "Williams", "Wilson", "Johnson", "Davies",
            "Robinson", "Wright", "Thompson", "Evans", "Walker", "White", "Roberts", "Green",
            "Hall", "Wood", "Jackson", "Clarke", "Patel", "Campbell", "Murphy", "Kelly")),
    "de": (("Lukas", "Leon", "Maximilian", "Felix", "Paul", "Jonas", "Tim", "Jan", "Florian",
            "Stefan", "Anna", "Lena", "Laura", "Julia", "Sarah", "Katharina", "Sophie", "Marie",
            "Lea", "Johanna", "Tobias", "Markus", "Sabine", "Andrea"),
           ("Müller", "Schmidt", "Schneider", "Fischer", "Weber", "Meyer", "Wagner", "Becker",
            "Schulz", "Hoffmann", "Schäfer", "Koch", "Bauer", "Richter", "Klein", "Wolf",
            "Schröder", "Neumann", "Schwarz", "Zimmermann", "Braun", "Krüger", "Hofmann")),
    "fr": (("Louis", "Gabriel", "Jules", "Hugo", "Lucas", "Arthur", "Nathan", "Théo", "Antoine",
            "Nicolas", "Emma", "Jade", "Louise", "Alice", "Chloé", "Léa", "Manon", "Camille",
            "Inès", "Juliette", "Pierre", "Julien", "Céline", "Sophie"),
           ("Martin", "Bernard", "Dubois", "Thomas", "Robert", "Richard", "Petit", "Durand",
            "Leroy", "Moreau", "Simon", "Laurent", "Lefebvre", "Michel", "Garcia", "David",
            "Bertrand", "Roux", "Vincent", "Fournier", "Morel", "Girard", "Lambert")),
    "it": (("Francesco", "Alessandro", "Lorenzo", "Matteo", "Andrea", "Marco", "Luca", "Giuseppe",
            "Davide", "Simone", "Giulia", "Sofia", "Aurora", "Alice", "Chiara", "Francesca",
            "Martina", "Sara", "Elena", "Valentina", "Paolo", "Roberto"),
           ("Rossi", "Russo", "Ferrari", "Esposito", "Bianchi", "Romano", "Colombo", "Ricci",
            "Marino", "Greco", "Bruno", "Gallo", "Conti", "De Luca", "Mancini", "Costa",
            "Giordano", "Rizzo", "Lombardi", "Moretti", "Barbieri", "Fontana")),
    "es": (("Santiago", "Mateo", "Sebastián", "Diego", "Alejandro", "Daniel", "Javier", "Carlos",
            "Miguel", "José", "Sofía", "Valentina", "Isabella", "Camila", "Lucía", "María",
            "Martina", "Daniela", "Paula", "Carmen", "Juan", "Luis", "Andrés", "Gabriela"),
           ("García", "Rodríguez", "González", "Fernández", "López", "Martínez", "Sánchez",
            "Pérez", "Gómez", "Martín", "Jiménez", "Ruiz", "Hernández", "Díaz", "Moreno",
            "Álvarez", "Romero", "Torres", "Ramírez", "Flores", "Vargas", "Castro", "Ortiz")),
    "pt": (("João", "Pedro", "Lucas", "Gabriel", "Rafael", "Tiago", "Miguel", "Guilherme", "Bruno",
            "Rodrigo", "Maria", "Ana", "Beatriz", "Mariana", "Júlia", "Larissa", "Camila",
            "Fernanda", "Inês", "Carolina", "Felipe", "Thiago"),
           ("Silva", "Santos", "Oliveira", "Souza", "Pereira", "Costa", "Ferreira", "Rodrigues",
            "Almeida", "Nascimento", "Lima", "Araújo", "Carvalho", "Gomes", "Martins", "Ribeiro",
            "Barbosa", "Rocha", "Dias", "Teixeira", "Moreira", "Cardoso")),
    "nl": (("Daan", "Sem", "Lucas", "Bram", "Jesse", "Thijs", "Ruben", "Sander", "Emma", "Julia",
            "Sanne", "Lotte", "Anouk", "Fleur", "Iris", "Eva"),
           ("de Jong", "Jansen", "de Vries", "van den Berg", "van Dijk", "Bakker", "Visser",
            "Smit", "Meijer", "de Boer", "Mulder", "de Groot", "Bos", "Vos", "Peters", "Hendriks")),
    "pl": (("Jakub", "Jan", "Mateusz", "Piotr", "Tomasz", "Krzysztof", "Paweł", "Michał", "Anna",
            "Katarzyna", "Magdalena", "Agnieszka", "Joanna", "Zuzanna", "Maja", "Ewa"),
           ("Nowak", "Kowalski", "Wiśniewski", "Wójcik", "Kowalczyk", "Kamiński", "Lewandowski",
            "Zieliński", "Szymański", "Woźniak", "Dąbrowski", "Kozłowski", "Jankowski", "Mazur")),
    "nordic": (("Erik", "Lars", "Johan", "Anders", "Oskar", "Nils", "Karl", "Elsa", "Maja",
                "Ingrid", "Astrid", "Linnea", "Ebba", "Freja"),
               ("Andersson", "Johansson", "Karlsson", "Nilsson", "Eriksson", "Larsson", "Olsson",
                "Persson", "Svensson", "Gustafsson", "Lindberg", "Lindqvist")),
    "gr": (("Georgios", "Dimitrios", "Konstantinos", "Ioannis", "Nikolaos", "Andreas", "Christos",
            "Maria", "Eleni", "Katerina", "Vasiliki", "Sofia", "Despina", "Anna"),
           ("Papadopoulos", "Georgiou", "Pappas", "Nikolaou", "Konstantinou", "Ioannou",
            "Christodoulou", "Charalambous", "Vasileiou", "Papageorgiou", "Dimitriou")),
    "ar": (("Mohammed", "Ahmed", "Ali", "Omar", "Khalid", "Yousef", "Hassan", "Ibrahim", "Abdullah",
            "Faisal", "Tariq", "Karim", "Fatima", "Aisha", "Mariam", "Noor", "Layla", "Sara",
            "Huda", "Reem", "Salma", "Yasmin"),
           ("Al Hashimi", "Al Mansouri", "Al Farsi", "Haddad", "Khoury", "Nasser", "Saleh",
            "Mahmoud", "Abdallah", "Hussein", "Al Qassimi", "Al Zahrani", "Rahman", "Farouk",
            "Mostafa", "El Sayed", "Aziz", "Hamdan", "Shaker", "Othman")),
    "tr": (("Mehmet", "Mustafa", "Ahmet", "Ali", "Hüseyin", "Hasan", "Emre", "Burak", "Murat",
            "Ayşe", "Fatma", "Emine", "Zeynep", "Elif", "Merve", "Esra"),
           ("Yılmaz", "Kaya", "Demir", "Şahin", "Çelik", "Yıldız", "Yıldırım", "Öztürk", "Aydın",
            "Özdemir", "Arslan", "Doğan", "Kılıç", "Aslan", "Çetin", "Kara")),
    "ng": (("Chinedu", "Emeka", "Oluwaseun", "Tunde", "Ibrahim", "Musa", "Chukwuemeka", "Adebayo",
            "Ngozi", "Chiamaka", "Funmilayo", "Aisha", "Blessing", "Adaeze", "Yetunde"),
           ("Okafor", "Adeyemi", "Okonkwo", "Balogun", "Eze", "Nwosu", "Ibrahim", "Bello",
            "Ogunleye", "Chukwu", "Abubakar", "Adewale", "Obi", "Onyeka")),
    "ke": (("Brian", "Kevin", "Dennis", "Collins", "Peter", "Samuel", "Faith", "Mercy", "Grace",
            "Esther", "Wanjiru", "Akinyi", "Njeri"),
           ("Otieno", "Kamau", "Mwangi", "Odhiambo", "Ochieng", "Wanjiku", "Kiprop", "Mutua",
            "Njoroge", "Onyango", "Kariuki", "Chebet")),
    "in": (("Aarav", "Vivaan", "Aditya", "Arjun", "Rohan", "Rahul", "Amit", "Vikram", "Sanjay",
            "Rajesh", "Priya", "Ananya", "Diya", "Aisha", "Kavya", "Pooja", "Neha", "Sneha",
            "Deepika", "Meera"),
           ("Sharma", "Verma", "Gupta", "Patel", "Reddy", "Iyer", "Nair", "Singh", "Kumar",
            "Das", "Mehta", "Joshi", "Rao", "Chopra", "Malhotra", "Agarwal", "Bose", "Menon")),
    "my": (("Muhammad", "Ahmad", "Wei Jie", "Jun Hao", "Arif", "Hafiz", "Siti", "Nur", "Mei Ling",
            "Aishah", "Farah", "Kumar", "Priya"),
           ("bin Abdullah", "bin Ismail", "Tan", "Lim", "Lee", "Wong", "Ng", "binti Ahmad",
            "Chong", "Abdul Rahman", "Raj", "Teoh")),
    "th": (("Somchai", "Somsak", "Anan", "Kittisak", "Prasert", "Niran", "Siriporn", "Kanya",
            "Malee", "Pimchanok", "Sunisa", "Nattaya"),
           ("Saetang", "Srisuk", "Chaiyaporn", "Wongsawat", "Rattanakorn", "Thongchai", "Boonmee",
            "Kaewkla", "Phromma", "Chantarasak")),
    "vn": (("Minh", "Hùng", "Tuấn", "Dũng", "Long", "Nam", "Quang", "Lan", "Hương", "Linh",
            "Trang", "Mai", "Thảo", "Ngọc"),
           ("Nguyễn", "Trần", "Lê", "Phạm", "Hoàng", "Huỳnh", "Phan", "Vũ", "Võ", "Đặng",
            "Bùi", "Đỗ")),
    "id": (("Budi", "Agus", "Andi", "Dedi", "Hendra", "Rizky", "Joko", "Siti", "Dewi", "Putri",
            "Ayu", "Rina", "Indah", "Wulan"),
           ("Santoso", "Wijaya", "Saputra", "Hidayat", "Setiawan", "Kurniawan", "Pratama",
            "Gunawan", "Susanto", "Halim", "Nugroho", "Permana")),
    "ph": (("Juan", "Jose", "Mark", "John Paul", "Christian", "Angelo", "Maria", "Kristine",
            "Angelica", "Mary Joy", "Jasmine", "Princess"),
           ("Santos", "Reyes", "Cruz", "Bautista", "Ocampo", "Garcia", "Mendoza", "Torres",
            "Tomas", "Villanueva", "Ramos", "Aquino")),
    "cn": (("Wei", "Jun", "Hao", "Ming", "Jie", "Lei", "Chen", "Yan", "Xin", "Li Na", "Mei",
            "Hui", "Ying", "Kai Wen", "Ka Ho", "Wing Yan"),
           ("Wang", "Li", "Zhang", "Liu", "Chen", "Yang", "Huang", "Zhao", "Wu", "Zhou", "Xu",
            "Sun", "Ma", "Chan", "Cheung", "Lau", "Wong", "Lin", "Tan")),
    "jp": (("Haruto", "Sota", "Yuto", "Hiroshi", "Takeshi", "Kenji", "Yui", "Hina", "Sakura",
            "Yuki", "Aoi", "Naoko"),
           ("Sato", "Suzuki", "Takahashi", "Tanaka", "Watanabe", "Ito", "Yamamoto", "Nakamura",
            "Kobayashi", "Kato", "Yoshida", "Yamada")),
    "kr": (("Min-jun", "Seo-jun", "Ji-ho", "Hyun-woo", "Jae-won", "Sung-min", "Seo-yeon",
            "Ji-woo", "Min-seo", "Ha-eun", "Soo-jin", "Ye-jin"),
           ("Kim", "Lee", "Park", "Choi", "Jung", "Kang", "Cho", "Yoon", "Jang", "Lim", "Han",
            "Oh")),
    "fa": (("Ali", "Reza", "Mohammad", "Hossein", "Mehdi", "Amir", "Dariush", "Farhad", "Maryam",
            "Zahra", "Fatemeh", "Shirin", "Parisa", "Leila"),
           ("Hosseini", "Mohammadi", "Rezaei", "Ahmadi", "Moradi", "Karimi", "Jafari", "Rahimi",
            "Tehrani", "Sadeghi", "Ghasemi", "Kazemi")),
    "mm": (("Aung", "Kyaw", "Min", "Zaw", "Htet", "Thura", "Su", "Aye", "Thandar", "Khin", "May",
            "Nandar"),
           ("Win", "Oo", "Htun", "Naing", "Soe", "Myint", "Thein", "Lwin", "Tun", "Hlaing",
            "Aung", "Maung")),
}

EMAIL_DOMAINS: tuple[str, ...] = (
    "gmail.com", "gmail.com", "gmail.com", "yahoo.com", "outlook.com", "hotmail.com",
    "icloud.com", "proton.me", "mail.com", "gmx.net", "yandex.com", "live.com",
)
# E-mail domains of made-up companies (IB partners, corporate clients).
CORPORATE_DOMAINS: tuple[str, ...] = (
    "example.com", "example.org", "example.net",
)


def ascii_fold(text: str) -> str:
    """"Müller" -> "Muller": for e-mail addresses and card embossing."""
    folded = unicodedata.normalize("NFKD", text)
    return "".join(ch for ch in folded if ord(ch) < 128 and not unicodedata.combining(ch))


def haversine_km(a: Country, b: Country) -> float:
    """Great-circle distance between two countries' reference points."""
    lat1, lon1, lat2, lon2 = map(math.radians, (a.lat, a.lon, b.lat, b.lon))
    h = math.sin((lat2 - lat1) / 2) ** 2 + math.cos(lat1) * math.cos(lat2) * math.sin(
        (lon2 - lon1) / 2) ** 2
    return 2 * 6371.0 * math.asin(math.sqrt(h))


# -- IP blocks ----------------------------------------------------------------------------------

# First octets that are never used: private, loopback, CGNAT, link-local, benchmarking,
# documentation, multicast and reserved ranges (and 0).
_RESERVED_FIRST = frozenset({0, 10, 100, 127, 169, 172, 192, 198, 203, *range(224, 256)})


@dataclass(frozen=True, slots=True)
class IpBlock:
    """A /16 network: (first two octets) -> country and kind."""

    a: int
    b: int
    country: str
    kind: str  # residential / mobile / hosting
    city: str

    @property
    def cidr(self) -> str:
        return f"{self.a}.{self.b}.0.0/16"

    @property
    def base(self) -> int:
        return (self.a << 24) | (self.b << 16)


@dataclass(slots=True)
class GeoIp:
    """The simulator's own IP plan: deterministic, independent of the seed."""

    blocks: list[IpBlock] = field(default_factory=list)
    residential: dict[str, list[IpBlock]] = field(default_factory=dict)
    mobile: dict[str, list[IpBlock]] = field(default_factory=dict)
    hosting: dict[str, list[IpBlock]] = field(default_factory=dict)
    index: dict[int, IpBlock] = field(default_factory=dict)  # (a << 8 | b) -> block

    def block_of(self, ip: int) -> IpBlock:
        return self.index[(ip >> 16) & 0xFFFF]


def build_geoip() -> GeoIp:
    rng = random.Random("brokerstream-simulator-geoip-v1")
    used: set[tuple[int, int]] = set()
    firsts = [a for a in range(1, 224) if a not in _RESERVED_FIRST]
    geo = GeoIp()

    def take(country: Country, kind: str) -> IpBlock:
        while True:
            pair = (rng.choice(firsts), rng.randrange(256))
            if pair not in used:
                used.add(pair)
                block = IpBlock(pair[0], pair[1], country.code, kind, rng.choice(country.cities))
                geo.blocks.append(block)
                return block

    for c in COUNTRIES:
        if c.code != "US":
            geo.residential[c.code] = [take(c, "residential") for _ in range(3)]
            geo.mobile[c.code] = [take(c, "mobile")]
        if c.code in HOSTING_COUNTRIES:
            geo.hosting[c.code] = [take(c, "hosting") for _ in range(2)]
    geo.blocks.sort(key=lambda b: (b.a, b.b))
    geo.index = {(b.a << 8) | b.b: b for b in geo.blocks}
    return geo


GEOIP = build_geoip()


def ip_text(ip: int) -> str:
    return f"{ip >> 24}.{(ip >> 16) & 255}.{(ip >> 8) & 255}.{ip & 255}"


def mt4_ip(ip: int) -> int:
    """ConOnline.ip: the in_addr bytes read as a little-endian integer (first octet lowest)."""
    return int.from_bytes(ip.to_bytes(4, "big"), "little")


def geoip_csv() -> str:
    """The IP plan as CSV: network, country, city, latitude, longitude, kind."""
    lines = ["network,country,city,latitude,longitude,kind"]
    for b in GEOIP.blocks:
        c = BY_CODE[b.country]
        lines.append(f"{b.cidr},{b.country},{b.city},{c.lat:.2f},{c.lon:.2f},{b.kind}")
    return "\n".join(lines) + "\n"
