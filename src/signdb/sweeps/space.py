"""``--param KEY=SPACE``: what a sweep varies and what it holds fixed.

SPACE is ``choice:a,b,c``, ``int:LOW:HIGH``, ``float:LOW:HIGH`` or
``loguniform:LOW:HIGH``; anything else fixes the parameter at that value. Values
are read as ``signdb train --param`` reads them (:func:`signdb.ml.parse_param`): a
layer list is ``256-128``, so ``hidden=choice:64,128,256-128`` offers one and two
layers without brackets or quotes. Every name must be a hyperparameter of the
sweep's model, checked before a study exists.

Examples
--------
>>> space, fixed = parse_params(["lr=loguniform:1e-4:1e-1", "hidden=choice:64,256-128", "l2=0"])
>>> space["lr"], space["hidden"].choices, space["hidden"].encoded, fixed
(Space(kind='loguniform', low=0.0001, high=0.1, choices=(), encoded=()), ([64], [256, 128]), ('[64]', '[256, 128]'), {'l2': 0})
>>> parse_params(["hidden=choice:[64],[128]"])[0]["hidden"].choices  # JSON lists still read
([64], [128])
>>> parse_params(["lr=loguniform:0:1"])  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
signdb.errors.InvalidArgument: --param lr=loguniform:0:1: loguniform needs 0 < LOW < HIGH...
"""

from __future__ import annotations

import itertools
import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from signdb.errors import InvalidArgument
from signdb.ml.registry import parse_param

KINDS = ("choice", "int", "float", "loguniform")
OBJECTIVES = ("val_accuracy", "val_f1")
SAMPLERS = ("tpe", "random", "grid")


@dataclass(frozen=True)
class Space:
    """One searched parameter.

    A choice travels to Optuna as its JSON text (Optuna's categorical choices
    must be None/bool/int/float/str, and ``hidden=[64]`` is a list). That text
    is fixed when the sweep is created and stored with it: PostgreSQL's jsonb
    rewrites numbers (``1e30`` comes back as ``1000...0``), so re-encoding a
    stored value would not find the choice Optuna holds.
    """

    kind: str  # choice, int, float or loguniform
    low: float | None = None
    high: float | None = None
    choices: tuple[Any, ...] = ()
    encoded: tuple[str, ...] = ()  # the choices' JSON text, as Optuna stores them

    def __post_init__(self) -> None:
        if self.kind == "choice" and not self.encoded:
            object.__setattr__(self, "encoded", tuple(json.dumps(c) for c in self.choices))

    def as_dict(self) -> dict[str, Any]:
        if self.kind == "choice":
            return {"kind": "choice", "choices": list(self.choices), "encoded": list(self.encoded)}
        return {"kind": self.kind, "low": self.low, "high": self.high}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Space:
        if d["kind"] == "choice":
            return cls("choice", choices=tuple(d["choices"]), encoded=tuple(d["encoded"]))
        return cls(d["kind"], d["low"], d["high"])

    def encode(self, value: Any) -> str:
        """The text Optuna holds for the choice ``value`` (a grid point's fixed param)."""
        return self.encoded[self.choices.index(value)]

    def suggest(self, trial: Any, name: str) -> Any:
        """Draw this parameter for an Optuna ``trial`` (``trial.suggest_*``)."""
        if self.kind == "choice":
            return json.loads(trial.suggest_categorical(name, list(self.encoded)))
        if self.kind == "int":
            return trial.suggest_int(name, int(self.low), int(self.high))
        return trial.suggest_float(name, self.low, self.high, log=self.kind == "loguniform")


def _number(text: str, pair: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise InvalidArgument(f"--param {pair}: {text!r} is not a number") from None
    if not math.isfinite(value):
        raise InvalidArgument(f"--param {pair}: {text!r} is not a finite number")
    return value


def parse_space(pair: str, spec: str) -> Space | None:
    """The Space of one ``--param`` value, or None when it fixes the parameter."""
    kind, sep, rest = spec.partition(":")
    if not sep or kind not in KINDS:
        return None
    if kind == "choice":
        choices = _split_choices(rest, pair.partition("=")[0].strip())
        if not choices:
            raise InvalidArgument(
                f"--param {pair}: choice needs at least one value, e.g. choice:0.01,0.1"
            )
        if len({json.dumps(c, sort_keys=True) for c in choices}) != len(choices):
            raise InvalidArgument(f"--param {pair}: a choice is listed twice")
        return Space("choice", choices=tuple(choices))
    bounds = rest.split(":")
    if len(bounds) != 2:
        raise InvalidArgument(f"--param {pair}: {kind} takes LOW:HIGH, e.g. {kind}:1:10")
    low, high = (_number(b, pair) for b in bounds)
    if kind == "int":
        if low != int(low) or high != int(high):
            raise InvalidArgument(f"--param {pair}: int bounds must be whole numbers")
        if low > high:
            raise InvalidArgument(
                f"--param {pair}: int needs LOW <= HIGH, got {int(low)} > {int(high)}"
            )
        return Space("int", int(low), int(high))
    if kind == "loguniform" and not 0 < low < high:
        raise InvalidArgument(
            f"--param {pair}: loguniform needs 0 < LOW < HIGH (the logarithm of 0 is not "
            f"defined), got {bounds[0]} and {bounds[1]}; e.g. loguniform:1e-4:1e-1"
        )
    if kind == "float" and not low < high:
        raise InvalidArgument(f"--param {pair}: float needs LOW < HIGH, got {low} and {high}")
    return Space(kind, low, high)


def _split_choices(text: str, name: str) -> list[Any]:
    """``a,b,c``; a choice may be a layer list ``256-128`` or a JSON list ``[128,64]``."""
    out, depth, start = [], 0, 0
    for i, ch in enumerate(text + ","):
        if ch in "[{":
            depth += 1
        elif ch in "]}":
            depth -= 1
        elif ch == "," and depth == 0:
            item = text[start:i].strip()
            if item:
                out.append(parse_param(name, item))
            start = i + 1
    return out


def parse_params(pairs: Iterable[str]) -> tuple[dict[str, Space], dict[str, Any]]:
    """(searched spaces, fixed values) from ``--param KEY=SPACE`` pairs."""
    space: dict[str, Space] = {}
    fixed: dict[str, Any] = {}
    for pair in pairs:
        key, sep, spec = pair.partition("=")
        key = key.strip()
        if not sep or not key:
            raise InvalidArgument(
                f"--param takes KEY=SPACE, got {pair!r}; e.g. --param lr=float:1e-3:1e-1"
            )
        if key in space or key in fixed:
            raise InvalidArgument(f"--param {key} is given twice")
        found = parse_space(pair, spec.strip())
        if found is None:
            fixed[key] = parse_param(key, spec)
        else:
            space[key] = found
    return space, fixed


def check_names(names: Iterable[str], accepted: Sequence[str], model: str) -> None:
    unknown = sorted(set(names) - set(accepted))
    if unknown:
        raise InvalidArgument(
            f"model {model!r} has no hyperparameter {', '.join(unknown)}; its hyperparameters "
            f"are {', '.join(accepted)}"
        )


def grid_points(space: dict[str, Space]) -> list[dict[str, Any]]:
    """Every combination of the choices, in a stable order (a grid sweep's trials)."""
    bad = [k for k, s in space.items() if s.kind != "choice"]
    if bad:
        raise InvalidArgument(
            f"--sampler grid takes choice spaces only; {', '.join(bad)} is not one "
            "(e.g. --param lr=choice:0.001,0.01)"
        )
    names = sorted(space)
    return [
        dict(zip(names, combo, strict=True))
        for combo in itertools.product(*(space[n].choices for n in names))
    ]
