"""The arguments that describe a run's request, shared by ``generate``, ``demo`` and ``plan``:
parsing them into a :class:`ProposalRequest` with one-line errors naming the flag."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from ..errors import InputError, validation_message
from ..pipeline import NODES, Profile, ProposalRequest, RunOptions, load_profiles

__all__ = [
    "add_request_arguments",
    "build_request",
    "check_output",
    "common_options",
    "request_from_args",
]


def add_request_arguments(p: argparse.ArgumentParser) -> None:
    """Brief, countries and profiles (the request's own fields)."""
    p.add_argument("--brief", help="what to propose, e.g. 'savings products for households'")
    p.add_argument("--countries", help="ISO codes, comma-separated, e.g. AR,BR,MX")
    p.add_argument(
        "--profiles",
        type=Path,
        help="YAML/JSON file of {name, description} (a list, or a mapping country -> list)",
    )
    p.add_argument(
        "--profile",
        action="append",
        default=[],
        metavar="'NAME: DESCRIPTION'",
        help="an inline profile (repeatable)",
    )


def common_options(p: argparse.ArgumentParser) -> None:
    """Variables, themes, proposals, models, window, budgets and simulator options."""
    p.add_argument(
        "--var",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a variable passed to every prompt (repeatable)",
    )
    p.add_argument("--themes", type=int, default=9, help="opportunity themes (default 9)")
    p.add_argument("--proposals", type=int, default=5, help="proposals per country and profile")
    p.add_argument(
        "--model",
        action="append",
        default=[],
        metavar="NODE=MODEL",
        help=f"model for one node ({', '.join(NODES)}); repeatable",
    )
    p.add_argument("--window", type=int, help="context window in tokens (default: settings)")
    p.add_argument("--output-reserve", type=int, help="tokens kept for each answer")
    p.add_argument("--max-tokens", type=int, help="token budget of the run")
    p.add_argument("--max-cost", type=float, help="cost budget of the run in USD")
    p.add_argument(
        "--time-scale",
        type=float,
        default=None,
        help="simulator only: wall seconds per simulated second "
        "(default: PROPOSALS_SIMULATOR_TIME_SCALE, 0.02)",
    )
    p.add_argument(
        "--no-cache",
        action="store_true",
        help="send every call to the provider, even one answered before (answers are still "
        "stored); cached answers are only ever reused from the same provider endpoint",
    )
    p.add_argument("--quiet", action="store_true", help="no live progress")


def _pairs(values: list[str], what: str) -> dict[str, str]:
    out = {}
    for raw in values:
        key, sep, value = raw.partition("=")
        if not sep or not key.strip():
            raise InputError(f"{what} must look like KEY=VALUE, got {raw!r}")
        out[key.strip()] = value.strip()
    return out


# Request fields as the user typed them, for one-line error messages.
_LABELS = {
    "brief": "--brief",
    "countries": "--countries",
    "profiles": "profiles",
    "variables": "--var",
    "themes": "--themes",
    "proposals_per_pair": "--proposals",
    "models": "--model",
    "context_window": "--window",
    "output_reserve": "--output-reserve",
    "max_tokens": "--max-tokens",
    "max_cost_usd": "--max-cost",
}


def _options(args: argparse.Namespace) -> RunOptions:
    try:
        return RunOptions(
            themes=args.themes,
            proposals_per_pair=args.proposals,
            models=_pairs(args.model, "--model"),
            context_window=args.window,
            output_reserve=args.output_reserve,
            max_tokens=args.max_tokens,
            max_cost_usd=args.max_cost,
        )
    except ValidationError as exc:
        raise InputError(validation_message(exc, _LABELS)) from exc


def build_request(args: argparse.Namespace, profiles: Any, brief: str) -> ProposalRequest:
    try:
        return ProposalRequest(
            brief=brief,
            countries=args.countries,
            profiles=profiles,
            variables=_pairs(args.var, "--var"),
            options=_options(args),
        )
    except ValidationError as exc:
        raise InputError(validation_message(exc, _LABELS)) from exc


def inline_profile(raw: str) -> Profile:
    """``--profile 'NAME: DESCRIPTION'`` as a profile, or one line saying what is wrong."""
    name, _, desc = raw.partition(":")
    try:
        return Profile(name=name.strip(), description=desc.strip())
    except ValidationError as exc:
        if not name.strip():
            raise InputError(
                f"--profile {raw!r}: the profile needs a name before ':', "
                "e.g. 'young savers: 18-30, smartphone-first'"
            ) from exc
        raise InputError(f"--profile {raw!r}: {validation_message(exc)}") from exc


def check_output(path: Path | None, flag: str) -> None:
    """Fail in one line, before any work, if ``path`` cannot be written as a file."""
    if path is None:
        return
    if path.is_dir():
        raise InputError(f"{flag} {path}: is a folder; give a file name")
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise InputError(f"{flag} {path}: folder {parent} does not exist")
    if path.exists() and not os.access(path, os.W_OK):
        raise InputError(f"{flag} {path}: the file is not writable")
    if not path.exists() and not os.access(parent, os.W_OK | os.X_OK):
        raise InputError(f"{flag} {path}: cannot create a file in {parent}")


def request_from_args(args: argparse.Namespace, alternative: str = "") -> ProposalRequest:
    """The request the arguments describe, or one line saying which flag is wrong."""
    if not args.brief or not args.countries:
        raise InputError(f"--brief and --countries are required {alternative}".rstrip())
    profiles: Any = load_profiles(args.profiles) if args.profiles else []
    for raw in args.profile:
        if isinstance(profiles, dict):
            raise InputError("--profile cannot be mixed with per-country profiles")
        profiles.append(inline_profile(raw))
    if not profiles:
        raise InputError("give profiles with --profiles FILE or --profile 'name: description'")
    return build_request(args, profiles, args.brief)
