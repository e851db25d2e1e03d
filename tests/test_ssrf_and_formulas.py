"""Two small holes closed: IPv6 forms that embed an IPv4 address as webhook targets
(alerts/ssrf.py), and formula escaping that missed the full-width signs (CSV and Excel)."""

from __future__ import annotations

import ipaddress

import pytest

from costgraph.alerts import ssrf
from costgraph.alerts.errors import TargetRefused
from costgraph.billing.exports.columns import Kind, column_texts
from costgraph.billing.exports.formula import escape_formula
from costgraph.billing.reports.presentation import safe_text


@pytest.mark.parametrize(
    ("address", "hidden"),
    [
        ("::127.0.0.1", "127.0.0.1"),  # IPv4-compatible
        ("::a9fe:a9fe", "169.254.169.254"),  # compatible, the metadata address
        ("::ffff:0:7f00:1", "127.0.0.1"),  # IPv4-translated (SIIT)
        ("::ffff:a00:1", "10.0.0.1"),  # IPv4-mapped
        ("64:ff9b::a9fe:a9fe", "169.254.169.254"),  # NAT64 well-known prefix
        ("64:ff9b:1::a00:1", "10.0.0.1"),  # NAT64 local-use /48, the /96 embedding
        ("64:ff9b:1:a00:0:100::", "10.0.0.1"),  # the same at the /48 embedding (RFC 6052)
        ("2002:a9fe:a9fe::1", "169.254.169.254"),  # 6to4
        ("2001:0:4136:e378:8000:63bf:80ff:fffe", "127.0.0.1"),  # Teredo client (obfuscated)
    ],
)
def test_every_ipv6_embedding_of_ipv4_is_judged_by_the_ipv4_address(
    address: str, hidden: str
) -> None:
    assert ssrf.TargetPolicy().refusal(ipaddress.ip_address(address)) is not None
    assert ipaddress.ip_address(hidden) in ssrf._embedded(ipaddress.ip_address(address))


async def test_bracketed_literals_in_urls_are_refused() -> None:
    for host in ("[::127.0.0.1]", "[::a9fe:a9fe]", "[::ffff:0:7f00:1]", "[64:ff9b:1::a00:1]"):
        with pytest.raises(TargetRefused, match="refused address"):
            await ssrf.check_url(f"https://{host}/hook", ssrf.TargetPolicy())


def test_embedded_public_addresses_and_allowed_networks_follow_the_ipv4_address() -> None:
    public = ssrf.TargetPolicy()
    assert public.refusal(ipaddress.ip_address("64:ff9b::808:808")) is None  # 8.8.8.8
    local = ssrf.TargetPolicy(ssrf.parse_networks(["127.0.0.0/8"]))
    assert local.refusal(ipaddress.ip_address("::ffff:127.0.0.1")) is None
    assert local.allowed(ipaddress.ip_address("::127.0.0.2"))
    assert local.refusal(ipaddress.ip_address("::ffff:a00:1")) is not None  # 10.0.0.1


@pytest.mark.parametrize(
    "text",
    ["＝SUM(A1:A9)", "＋1", "－2", "＠cmd", "﹦1", "⁼1", "﹢1", "﹣1", "﹫x"],  # noqa: RUF001
)
def test_full_width_and_small_signs_are_escaped_in_csv_and_excel(text: str) -> None:
    assert escape_formula(text) == "'" + text
    assert column_texts(Kind.TEXT, [text]) == ["'" + text]
    assert safe_text(text) == "'" + text


def test_ordinary_text_is_left_alone() -> None:
    for text in ("Ünïcode", "日本語", "a＝b", "€5", ""):  # noqa: RUF001
        assert escape_formula(text) == text
        assert column_texts(Kind.TEXT, [text]) == [text]
