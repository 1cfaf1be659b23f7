"""What `inferstream experiment set` makes of its arguments (streams/experiments.py), without
a broker: versions follow the record in force, forms are validated as the workers validate."""

from __future__ import annotations

import pytest

from streams.experiments import ExperimentError, describe, find, new_experiment
from workers.errors import InvalidEvent
from workers.experiments.config import (
    Experiment,
    ExperimentStore,
    GuardRails,
    Variant,
    parse_experiment,
)


def make(**kw: object) -> Experiment:
    args: dict[str, object] = {
        "tenant": "*",
        "primary": "inferstream_cpu:1",
        "candidates": (),
        "shadows": (),
        "guard": GuardRails(),
        "previous": None,
        "by": "cli@test",
    }
    return new_experiment("canary", **(args | kw))  # type: ignore[arg-type]


def test_forms_become_variants_and_shares() -> None:
    exp = make(candidates=("inferstream_cpu_fp32:1=0.1",), shadows=("inferstream_cpu:2",))
    assert exp.version == 1 and exp.primary == Variant("inferstream_cpu", "1")
    assert [(c.variant.label, c.share) for c in exp.candidates] == [("inferstream_cpu_fp32:1", 0.1)]
    assert [(s.variant.label, s.share) for s in exp.shadows] == [("inferstream_cpu:2", 1.0)]
    assert parse_experiment("*", exp.to_json()) == exp


def test_version_follows_the_record_in_force() -> None:
    first = make(candidates=("m:2=0.1",))
    again = make(candidates=("m:2=0.2",), previous=first)
    assert again.version == first.version + 1


@pytest.mark.parametrize(
    ("kw", "error"),
    [
        ({"candidates": ("m:2",)}, ExperimentError),  # a candidate needs its share
        ({"candidates": ("m:2=ten",)}, ExperimentError),
        ({"candidates": ("m:2=1.5",)}, InvalidEvent),
        ({"candidates": ("m:2=0.6", "m:3=0.6")}, InvalidEvent),  # shares over 1
        ({"candidates": ("inferstream_cpu:1=0.1",)}, InvalidEvent),  # the primary itself
        ({"primary": "bad name!"}, InvalidEvent),
        ({"primary": "m:v2"}, InvalidEvent),
    ],
)
def test_bad_arguments_are_refused(kw: dict[str, object], error: type[Exception]) -> None:
    with pytest.raises(error):
        make(**kw)


def test_find_and_describe() -> None:
    store = ExperimentStore()
    store.apply("*", make(candidates=("m:2=0.1",)).to_json())
    store.apply("acme", make(tenant="acme", primary="m:3").to_json())
    with pytest.raises(ExperimentError, match="several tenants"):
        find(store, "canary")
    with pytest.raises(ExperimentError, match="no experiment 'other'"):
        find(store, "other")
    assert [row["tenant"] for row in describe(store)] == ["*", "acme"]
