"""The replay's fast paths give exactly what the slow, obvious ones give."""

from __future__ import annotations

import itertools
import math

import pytest
from pydantic import ValidationError

from shopfloor.codec import DecodeError, decode_value, encode_value
from shopfloor.config import DataType, RegisterSpec, SiteConfig
from shopfloor.contracts import MachineState, Sample, SignalValue, check_signal
from simulators.replay import _Roundtrip, _signal_roundtrip

TS = 1_790_000_000_000
NUMBERS: list[SignalValue] = [
    0, 1, 7, -1, -40_000, 65_535, 65_536, 2**31, 2**32 + 5, True, False,
    0.0, -0.0, 0.004, 0.005, 0.015, 1.25, 62.5, 1234.5678, -3.3, 3.4e38, 1e39, math.nan, 1e-45,
]
VALUES = [*NUMBERS, "", "RUNNING", "OFF", "ACME-HSG", "x" * 40, "été", "bad\x01"]


def _codec(spec: RegisterSpec, value: SignalValue) -> object:
    try:
        return ("ok", decode_value(spec, encode_value(spec, value)))
    except (DecodeError, ValueError):
        return ("ok", None)
    except Exception as exc:  # the codec's other errors must come out of the fast path too
        return ("raises", type(exc))


def _fast(spec: RegisterSpec, value: SignalValue) -> object:
    try:
        return ("ok", _signal_roundtrip(spec)(value))
    except Exception as exc:
        return ("raises", type(exc))


def _specs(site: SiteConfig) -> list[RegisterSpec]:
    made = [
        RegisterSpec(signal="x", address=0, type=t, scale=scale, word_order=order)
        for t in DataType
        if t is not DataType.STRING
        for scale in (1.0, 0.1, 0.01, 2.5)
        for order in ("big", "little")
    ]
    return [*(r for p in site.profiles for r in p.registers), *made]


def test_signal_roundtrip_matches_the_codec(example_site: SiteConfig) -> None:
    for spec, value in itertools.product(_specs(example_site), VALUES):
        want, got = _codec(spec, value), _fast(spec, value)
        assert repr(got) == repr(want), (spec, value)  # repr: -0.0 and 0.0, 1 and 1.0 must not pass as equal


def test_roundtrip_samples_match_validated_ones(example_site: SiteConfig) -> None:
    profile = example_site.profile("cnc-mill-v1")
    rt = _Roundtrip(profile, (TS, TS + 10_000))
    polls: list[dict[str, SignalValue]] = []
    for i, state in enumerate(["OFF", "RUNNING", "RUNNING", "STOPPED", "RUNNING"]):
        polls.append({
            "state": state, "stop_reason": 4 if state == "STOPPED" else 0, "badge": 1001, "job": "J-1",
            "good_count": 100 + i // 2, "reject_count": 3, "energy_kwh": 1000.0 + i * 0.0137,
            "power_kw": 0.0 if state == "OFF" else -0.0 if state == "STOPPED" else 11.0, "alarms": 0,
            "spindle_rpm": 8000,
        })
    polls.append({"state": "RUNNING", "badge": 1.0, "job": "J-1", "good_count": 2**32 + 1})  # odd types, gaps
    for i, values in enumerate(polls * 2):  # twice: the second pass comes from the memos
        got = rt(TS + i, values)
        want = {}
        for spec in profile.registers:
            if spec.signal in values and (decoded := _codec(spec, values[spec.signal])[1]) is not None:  # type: ignore[index]
                want[spec.signal] = decoded
        expected = Sample.model_validate({"ts": TS + i, "values": want})
        assert got.model_dump_json() == expected.model_dump_json()
        assert got == expected and got.model_fields_set == expected.model_fields_set


def test_roundtrip_rejects_what_the_contract_rejects(example_site: SiteConfig) -> None:
    profile = example_site.profile("press-brake-v1")  # badge is int32: a negative badge decodes negative
    with pytest.raises(ValidationError):
        _Roundtrip(profile, (TS, TS))(TS, {"state": "IDLE", "badge": -5, "good_count": 1})
    rt = _Roundtrip(profile, (0, -1))  # timestamps not pre-checked: each sample's own is checked
    with pytest.raises(ValidationError):
        rt(5, {"state": "IDLE", "badge": 1})
    with pytest.raises(ValueError, match="not a non-negative"):
        check_signal("good_count", -1)
    assert MachineState.RUNNING == "RUNNING"
