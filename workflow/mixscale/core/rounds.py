"""Iterated DDO (AutoScale, Appendix B: "iterate the process if necessary").

A DDO round perturbs each domain around a centre mixture, fits the per-domain laws and solves
for the optimum. The next round at the same scale perturbs around that optimum, so its fits are
local to where the optimum is: the first round's laws were fitted around the base mixture and,
with the trust region, could move each weight by at most the perturbation factor.

Each round's WEIGHTS.json carries its centre (every domain's ``base_weight`` in its fit), so
how far a round moved and the next round's centre follow from that file alone.
"""

from __future__ import annotations

from typing import Any

from mixscale.errors import InputError


def round_centre(weights_json: dict[str, Any], source: str = "WEIGHTS.json") -> dict[str, float]:
    """The mixture a round perturbed around: its base run's share of each domain."""
    try:
        return {d: float(f["base_weight"]) for d, f in weights_json["fit"]["domains"].items()}
    except (KeyError, TypeError, ValueError) as exc:
        raise InputError(
            source, "fit.domains.*.base_weight", "missing", "regenerate it with mixscale ddo"
        ) from exc


def round_move(weights_json: dict[str, Any], source: str = "WEIGHTS.json") -> float:
    """The largest change of a weight between a round's centre and its optimum."""
    centre = round_centre(weights_json, source)
    weights = weights_json["weights"]
    return max(abs(float(weights[d]) - centre[d]) for d in centre)


def converged(weights_json: dict[str, Any], tolerance: float, source: str = "WEIGHTS.json"):
    """Whether another round is pointless: this one moved no weight by more than
    ``tolerance`` from its centre, so the next would perturb around the same mixture."""
    return round_move(weights_json, source) <= tolerance


def next_centre(
    weights_json: dict[str, Any], factor: float, source: str = "WEIGHTS.json"
) -> dict[str, float]:
    """The centre of the next round: this round's optimum, each weight at least the smallest
    share this round observed (its centre / factor), renormalised.

    The floor matters without the trust region only: an optimum may set a domain to 0, and a
    run perturbing 0 tokens x factor would observe nothing about that domain.
    """
    centre = round_centre(weights_json, source)
    weights = weights_json["weights"]
    floored = {d: max(float(weights[d]), centre[d] / factor) for d in centre}
    total = sum(floored.values())
    return {d: w / total for d, w in floored.items()}


def combine_rounds(rounds: list[dict[str, Any]], planned: int, tolerance: float) -> dict[str, Any]:
    """A scale's final WEIGHTS.json: the last round's, with every round's centre, weights and
    move, and why the iteration ended."""
    if not rounds:
        raise InputError("--weights", "count", "no round given", "give each round's weights.json")
    history = []
    for number, result in enumerate(rounds, start=1):
        source = f"round {number}"
        history.append(
            {
                "round": number,
                "centre": round_centre(result, source),
                "weights": dict(result["weights"]),
                "moved": round_move(result, source),
            }
        )
    done = len(rounds)
    if done < planned and not converged(rounds[-1], tolerance):
        raise InputError(
            f"round {done}",
            "weights",
            f"moved {round_move(rounds[-1]):.3g} > tolerance {tolerance:g}, yet the rounds stop",
            f"give all {planned} rounds' weights.json",
        )
    final = dict(rounds[-1])
    final["rounds"] = history
    final["rounds_planned"] = planned
    final["round_tolerance"] = tolerance
    final["stopped_early"] = done < planned
    final["rounds_note"] = (
        f"stopped after round {done} of {planned}: it moved no weight by more than {tolerance:g}"
        if done < planned
        else f"{done} round{'s' if done > 1 else ''} of {planned}"
    )
    return final
