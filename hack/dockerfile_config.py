#!/usr/bin/env python3
"""The runtime config (ENV, LABEL, EXPOSE, USER, WORKDIR, STOPSIGNAL, ENTRYPOINT, CMD) of a Dockerfile's final stage.

Why this exists: hack/build-operator-image.sh builds the operator image without Docker, and must give it the same
config as operator/Dockerfile, the published image's recipe. Reading it from the Dockerfile means the two cannot
drift. Standard library only, like hack/oci_image.py.

    dockerfile_config.py operator/Dockerfile            hack/oci_image.py arguments, one per line
    dockerfile_config.py operator/Dockerfile --json     the config as JSON (keys as in an OCI image config)

Deliberately small: the final stage may hold only the instructions below; ENV/LABEL values are used literally, so
a `$` in them (variable expansion) is refused, as is the shell form of ENTRYPOINT and CMD (it means `/bin/sh -c`,
which nobody wants here). Anything it does not know makes it fail, never silently differ: teach it first.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path
from typing import Any

#: Instructions that shape the filesystem or the build, not the runtime config: the build script does their work
#: its own way (and its verification proves the result runs).
_BUILD_ONLY = {"FROM", "ARG", "COPY", "ADD", "RUN"}
_CONFIG = {"ENV", "LABEL", "EXPOSE", "USER", "WORKDIR", "ENTRYPOINT", "CMD", "STOPSIGNAL"}


class DockerfileError(ValueError):
    pass


def instructions(text: str) -> list[tuple[int, str, str]]:
    """(line number, INSTRUCTION, arguments) with comments dropped and `\\` continuations joined."""
    out: list[tuple[int, str, str]] = []
    pending: list[str] = []
    start = 0
    for number, raw in enumerate(text.splitlines(), 1):
        stripped = raw.strip()
        if stripped.startswith("#") or (not stripped and not pending):
            continue  # comments (and parser directives) and blank lines, also inside a continuation
        if not pending:
            start = number
        if stripped.endswith("\\"):
            pending.append(stripped[:-1].strip())
            continue
        pending.append(stripped)
        line = " ".join(p for p in pending if p)
        pending = []
        word, _, rest = line.partition(" ")
        out.append((start, word.upper(), rest.strip()))
    if pending:
        raise DockerfileError("the file ends inside a line continuation")
    return out


def _pairs(number: int, word: str, args: str) -> list[tuple[str, str]]:
    """`K=V K2="v 2"` (and the legacy `ENV K V` form) as pairs, values literal."""
    if "$" in args:
        raise DockerfileError(f"line {number}: {word} with `$`: variable expansion is not supported here")
    words = shlex.split(args)
    if word == "ENV" and words and "=" not in words[0]:
        key, _, value = args.partition(" ")  # legacy form: the rest of the line is the value
        return [(key, value.strip())]
    pairs = []
    for item in words:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise DockerfileError(f"line {number}: {word} expects KEY=VALUE, got {item!r}")
        pairs.append((key, value))
    return pairs


def _exec_form(number: int, word: str, args: str) -> list[str]:
    try:
        value = json.loads(args)
    except json.JSONDecodeError:
        value = None
    if not isinstance(value, list) or not all(isinstance(a, str) for a in value):
        raise DockerfileError(f'line {number}: {word} must be the JSON exec form, e.g. {word} ["cmd", "arg"]')
    return value


def final_stage_config(text: str) -> dict[str, Any]:
    """The final stage's runtime config, keys as in an OCI image config's ``config`` object."""
    stages: list[list[tuple[int, str, str]]] = []
    for number, word, args in instructions(text):
        if word == "FROM":
            stages.append([])
        elif not stages:
            if word != "ARG":
                raise DockerfileError(f"line {number}: {word} before the first FROM")
            continue
        stages[-1].append((number, word, args))
    if not stages:
        raise DockerfileError("no FROM: not a Dockerfile")
    env: dict[str, str] = {}
    labels: dict[str, str] = {}
    ports: list[str] = []
    config: dict[str, Any] = {}
    for number, word, args in stages[-1]:
        if word in _BUILD_ONLY:
            continue
        if word not in _CONFIG:
            raise DockerfileError(f"line {number}: {word} in the final stage is not supported by {Path(__file__).name}")
        if word == "ENV":
            env.update(_pairs(number, word, args))
        elif word == "LABEL":
            labels.update(_pairs(number, word, args))
        elif word == "EXPOSE":
            for word_port in args.split():
                port = word_port if "/" in word_port else f"{word_port}/tcp"
                if port not in ports:
                    ports.append(port)
        elif word in ("ENTRYPOINT", "CMD"):
            config[word.title() if word == "ENTRYPOINT" else "Cmd"] = _exec_form(number, word, args)
        elif word == "USER":
            config["User"] = args
        elif word == "WORKDIR":
            if "$" in args or not args.startswith("/"):
                raise DockerfileError(f"line {number}: WORKDIR must be an absolute literal path")
            config["WorkingDir"] = args
        elif word == "STOPSIGNAL":
            config["StopSignal"] = args
    if env:
        config["Env"] = [f"{k}={v}" for k, v in env.items()]
    if labels:
        config["Labels"] = labels
    if ports:
        config["ExposedPorts"] = {p: {} for p in ports}
    return config


def oci_image_args(config: dict[str, Any]) -> list[str]:
    """The same config as hack/oci_image.py options (each option and its value as two items)."""
    args: list[str] = []
    if "Entrypoint" in config:
        args += ["--entrypoint", json.dumps(config["Entrypoint"])]
    if "Cmd" in config:
        args += ["--cmd", json.dumps(config["Cmd"])]
    for item in config.get("Env", []):
        args += ["--env", item]
    for key, value in config.get("Labels", {}).items():
        args += ["--label", f"{key}={value}"]
    for port in config.get("ExposedPorts", {}):
        args += ["--expose", port]
    if "User" in config:
        args += ["--user", config["User"]]
    if "WorkingDir" in config:
        args += ["--workdir", config["WorkingDir"]]
    if "StopSignal" in config:
        args += ["--stop-signal", config["StopSignal"]]
    return args


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="dockerfile_config.py", description=__doc__.split("\n\n")[0])
    p.add_argument("dockerfile", type=Path)
    p.add_argument("--json", action="store_true", help="print the config as JSON instead of oci_image.py arguments")
    args = p.parse_args(argv)
    try:
        config = final_stage_config(args.dockerfile.read_text())
    except DockerfileError as error:
        print(f"dockerfile_config.py: {args.dockerfile}: {error}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(config, indent=2))
    else:
        for item in oci_image_args(config):
            if "\n" in item:
                print(f"dockerfile_config.py: a value with a newline: {item!r}", file=sys.stderr)
                return 1
            print(item)
    return 0


if __name__ == "__main__":
    sys.exit(main())
