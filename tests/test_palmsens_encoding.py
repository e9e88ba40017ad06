"""MethodSCRIPT wire formats, byte for byte: packet values, SI prefixes, metadata,
script literals and error replies (drivers.palmsens.encoding / errors)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from drivers.palmsens.encoding import (
    NAN_FIELD,
    SI_PREFIXES,
    STATUS_OVERLOAD,
    STATUS_TIMING_ERROR,
    EncodingError,
    PacketVar,
    decode_packet,
    decode_value,
    encode_packet,
    encode_value,
    format_literal,
    parse_literal,
)
from drivers.palmsens.errors import ErrorReply, parse_error
from drivers.sim.wire.transport import garble

# --- packet values -----------------------------------------------------------------------


def test_documented_packet_decodes_to_its_values() -> None:
    # An LSV packet as printed in PalmSens' documentation: set potential in µV,
    # current in pA with status 0 and current range 0x0F.
    e, i = decode_packet("Pda7F0BDF9u;ba7678CD7p,10,20F")
    assert (e.type, i.type) == ("da", "ba")
    assert e.value == pytest.approx((0x7F0BDF9 - 2**27) * 1e-6)
    assert e.value == pytest.approx(-0.999943)
    assert i.value == pytest.approx(-9.990953e-6)
    assert (e.status, e.range) == (None, None)
    assert (i.status, i.range, i.noise) == (0, 0x0F, None)
    assert not i.overload


def test_offset_and_prefix_pin_the_bytes() -> None:
    assert encode_value(0.0) == "8000000 "
    assert encode_value(1.0) == "80F4240u"  # 1 000 000 µV
    assert encode_value(-1.0) == "7F0BDC0u"
    assert encode_value(0.1) == "DF5E100n"  # 100 000 000 nV fits in 2**27
    assert encode_value(0.5e-3) == "807A120n"
    assert encode_value(7, integer=True) == "8000007i"
    assert encode_value(math.nan) == NAN_FIELD == "     nan"
    assert decode_value("8000007i") == 7.0 and math.isnan(decode_value("     nan"))


@pytest.mark.parametrize("letter", sorted(SI_PREFIXES, key=SI_PREFIXES.get))
def test_every_si_prefix_decodes(letter: str) -> None:
    assert decode_value(f"{2**27 + 1234:07X}{letter}") == pytest.approx(1234 * SI_PREFIXES[letter])


def test_round_trip_keeps_seven_hex_digits_of_precision() -> None:
    rng = np.random.default_rng(4)
    values = rng.uniform(-1, 1, 3000) * 10.0 ** rng.uniform(-11, 8, 3000)
    for v in values:
        back = decode_value(encode_value(float(v)))
        # The finest prefix that fits keeps |mantissa| >= 2**27 / 1000.
        assert abs(back - v) <= abs(v) * 1000 / 2**27 + 1e-30


def test_metadata_status_range_and_noise() -> None:
    var = PacketVar("ba", 1.5e-3, STATUS_OVERLOAD | STATUS_TIMING_ERROR, 24, 3)
    text = encode_packet([(var, False), (PacketVar("eb", 12.5), False)])
    assert text == "Pba816E360n,13,218,43;eb8BEBC20u"
    got, t = decode_packet(text)
    assert (got.status, got.range, got.noise) == (3, 24, 3)
    assert got.overload and got.timing_error
    assert got.status_text() == "timing error | overload"
    assert t.value == pytest.approx(12.5)


@pytest.mark.parametrize(
    "line",
    [
        "P",
        "Pab123",
        "PAb8000000 ",  # type must be lower case
        "Pab800000Zu",  # not hex
        "Pab8000000x",  # not a prefix
        "Pab8000000u;",  # empty variable
        "Pab8000000u,1",  # status without its digit
        "Pab8000000u 12",  # junk after the value
        "ab8000000u",  # no P
    ],
)
def test_malformed_packets_are_rejected(line: str) -> None:
    with pytest.raises(EncodingError):
        decode_packet(line)


def test_a_transport_garbled_packet_never_parses() -> None:
    line = encode_packet([(PacketVar("eb", 1.0), False), (PacketVar("ab", 0.25, 0), False)]) + "\n"
    garbled = garble(line.encode()).decode("latin-1")
    for part in garbled.split("\n"):
        if part:
            with pytest.raises(EncodingError):
                decode_packet(part)


# --- script literals -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (0.0, "0"),
        (1e-3, "1m"),
        (0.0125, "12500u"),
        (-0.5, "-500m"),
        (3600.0, "3600"),
        (3599.5, "3599500m"),
        (1e5, "100k"),
        (2.7e-4, "270u"),
        (5e-9, "5n"),
        (0.009978051494, "9978051n"),  # more digits than fit a 31-bit mantissa: rounded
    ],
)
def test_literals_are_integers_with_a_prefix(value: float, text: str) -> None:
    assert format_literal(value) == text
    back, integer = parse_literal(text)
    assert not integer
    assert back == pytest.approx(value, rel=1e-6)


def test_literal_round_trip_is_stable_and_precise() -> None:
    rng = np.random.default_rng(7)
    for v in rng.uniform(-1, 1, 2000) * 10.0 ** rng.uniform(-11, 8, 2000):
        text = format_literal(float(v))
        assert "." not in text and "e" not in text
        # At least 6.3 significant digits (a 31-bit mantissa at the finest prefix that fits).
        assert parse_literal(text)[0] == pytest.approx(v, rel=2.5e-7)
        assert format_literal(parse_literal(text)[0]) == text


@pytest.mark.parametrize("bad", ["1.5", "abc", "5x", "1e3", "", "--1", "5 m"])
def test_bad_literals_are_refused(bad: str) -> None:
    with pytest.raises(EncodingError):
        parse_literal(bad)


def test_integer_literal() -> None:
    assert parse_literal("11i") == (11.0, True)
    assert parse_literal("-3i") == (-3.0, True)


# --- error replies ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "code", "letter", "row", "col"),
    [
        ("Z!0006", 0x0006, "Z", None, None),
        ("q!0003", 0x0003, "q", None, None),
        ("e!4001: Line 2, Col 1", 0x4001, "e", 2, 1),
        ("!0032: Line 16", 0x0032, "", 16, None),
        ("!BEEF", 0xBEEF, "", None, None),
    ],
)
def test_error_lines(line: str, code: int, letter: str, row: int | None, col: int | None) -> None:
    error = parse_error(line)
    assert error == ErrorReply(code, letter, row, col)
    assert error.wire() == line
    assert f"!{code:04X}" in error.text()


def test_known_and_unknown_codes_are_described() -> None:
    assert "overloaded" in ErrorReply(0x0032).text()
    assert "unknown instrument error" in ErrorReply(0xBEEF).text()


@pytest.mark.parametrize("line", ["", "e", "Z", "Pab8000000 ", "M000B", "*", "!XYZ", "!00321", "e!0006 extra"])
def test_other_lines_are_not_errors(line: str) -> None:
    assert parse_error(line) is None
