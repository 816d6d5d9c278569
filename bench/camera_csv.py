"""A realistic county camera register as CSV, with known bad rows, for the benchmarks.

Deterministic (seeded): one county, 15 townships, 15 villages each; networks weighted like
FIELD.md's counties (慧眼 most); 70 % of rows carry a GB/T 28181 id, 30 % credentials.
Every `bad_every`-th row is broken in one of several ways; `expected_bad_lines` says where.
"""

from __future__ import annotations

import csv
import io
import random
from collections.abc import Iterator
from dataclasses import dataclass, field

from sqlalchemy.orm import Session

from registry.units import Unit, create_unit

COUNTY = ("示范县", "330199000000")
TOWNSHIPS = 15
VILLAGES = 15
NETWORKS = (["huiyan"] * 60 + ["xueliang"] * 25 + ["tianwang"] * 10 + ["traffic", "urban_management",
            "emergency_broadcast", "department", "other"])
TAGS = ["学校", "广场", "市场", "加油站", "危化品", "林区", "河道", "路口"]
HEADER = ["name", "network", "unit_code", "owner", "longitude", "latitude", "address", "main_stream_url",
          "sub_stream_url", "device_id", "username", "password", "tags", "enabled"]
BREAKERS = [
    ("network", "天罗地网"),
    ("unit_code", "999999999999"),
    ("latitude", "95.5"),
    ("device_id", "12345"),
    ("main_stream_url", "ftp://10.0.0.1/x"),
    ("name", ""),
    ("enabled", "maybe"),
    ("onvif", None),  # more cells than the header
]


def village_codes() -> list[str]:
    return [f"330199{t:03d}{v:03d}" for t in range(1, TOWNSHIPS + 1) for v in range(1, VILLAGES + 1)]


def create_units(session: Session) -> dict[str, Unit]:
    county = create_unit(session, name=COUNTY[0], code=COUNTY[1], parent_id=None, scope=None)
    units = {county.code: county}
    for t in range(1, TOWNSHIPS + 1):
        town = create_unit(session, name=f"第{t}镇", code=f"330199{t:03d}000", parent_id=county.id, scope=None)
        units[town.code] = town
        for v in range(1, VILLAGES + 1):
            village = create_unit(session, name=f"第{t}镇{v}村", code=f"330199{t:03d}{v:03d}", parent_id=town.id,
                                  scope=None)
            units[village.code] = village
    session.commit()
    return units


@dataclass
class Register:
    text: str
    rows: int
    expected_bad_lines: list[int] = field(default_factory=list)


def rows(count: int, seed: int = 7) -> Iterator[list[str]]:
    rng = random.Random(seed)
    villages = village_codes()
    for i in range(count):
        ip = f"10.{(i >> 16) & 255}.{(i >> 8) & 255}.{i & 255}"
        has_id = rng.random() < 0.7
        has_creds = rng.random() < 0.3
        yield [
            f"点位{i:06d}",
            rng.choice(NETWORKS),
            rng.choice(villages),
            rng.choice(["城关派出所", "综治中心", "应急管理局", "某某商贸有限公司", ""]),
            f"{120.1 + rng.uniform(-0.5, 0.5):.6f}",
            f"{30.2 + rng.uniform(-0.5, 0.5):.6f}",
            f"第{rng.randint(1, 99)}号路{rng.randint(1, 300)}号",
            f"rtsp://{ip}:554/Streaming/Channels/101",
            f"rtsp://{ip}:554/Streaming/Channels/102" if rng.random() < 0.5 else "",
            f"3301990000132{i:07d}" if has_id else "",
            "admin" if has_creds else "",
            f"pw{rng.randint(10**5, 10**6)}" if has_creds else "",
            ";".join(rng.sample(TAGS, rng.randint(0, 2))),
            "true" if rng.random() < 0.97 else "false",
        ]


def make_register(count: int, bad_every: int = 100, seed: int = 7) -> Register:
    """`count` data rows; every `bad_every`-th (1-based) broken; line 1 is the header."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(HEADER)
    bad: list[int] = []
    for index, row in enumerate(rows(count, seed), 1):
        if bad_every and index % bad_every == 0:
            column, value = BREAKERS[(index // bad_every) % len(BREAKERS)]
            if value is None:
                row = row + ["80"]
            else:
                row[HEADER.index(column)] = value
            bad.append(index + 1)
        writer.writerow(row)
    return Register(out.getvalue(), count, bad)
