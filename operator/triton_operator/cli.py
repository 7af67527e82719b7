"""The ``triton-operator`` command: run the operator, print the CRD, render manifests offline, run a local cluster."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import socket
import sys
import time
from pathlib import Path

from triton_operator.api.crd import render_yaml
from triton_operator.api.v1alpha1 import DEFAULT_TRITON_IMAGE
from triton_operator.policy.peering import DEFAULT_LIFETIME_SECONDS, default_priority
from triton_operator.render import render_manifests
from triton_operator.resources.meta import OperatorDefaults

DEFAULT_METRICS_PORT = 8080
DEFAULT_HEALTH_PORT = 8081


def _run(args: argparse.Namespace) -> int:
    import kopf
    from prometheus_client import start_http_server

    import triton_operator.handlers  # noqa: F401  (registers the kopf handlers)
    from triton_operator.peering import Peering

    if args.kubeconfig:
        os.environ["KUBECONFIG"] = args.kubeconfig
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if not args.verbose:  # kopf logs every handled event at INFO: thousands of lines a minute at scale
        logging.getLogger("kopf.objects").setLevel(logging.WARNING)
    if args.metrics_port:
        start_http_server(args.metrics_port)
    # kopf would derive its identity from getpass.getuser(), which raises when the process's UID has no passwd
    # entry: the chart's 65532, or any UID OpenShift assigns. The host name tells pods apart, the PID processes on
    # one machine. (kopf's Identity is a NewType of str that kopf does not export.)
    identity = f"triton-operator@{socket.gethostname()}.{os.getpid()}"
    priority = args.priority if args.priority is not None else default_priority(time.time())
    namespaces = tuple(args.namespace or ())
    memo = kopf.Memo(
        kubeconfig=args.kubeconfig,
        workers=args.workers,
        api_concurrency=args.api_concurrency,
        autoscale_interval=args.autoscale_interval,
        defaults=OperatorDefaults(triton_image=args.default_triton_image),
        namespaces=namespaces,
        peering=Peering(args.peering, namespaces, identity, priority) if args.peering else None,
        peering_lifetime=args.peering_lifetime,
    )
    asyncio.run(
        kopf.operator(
            standalone=not args.peering,
            peering_name=args.peering or None,
            priority=priority,
            identity=identity,  # type: ignore[arg-type]
            clusterwide=not namespaces,
            namespaces=namespaces,
            liveness_endpoint=f"http://0.0.0.0:{args.health_port}/healthz" if args.health_port else None,
            memo=memo,
        )
    )
    return 0


def _crds(args: argparse.Namespace) -> int:
    text = render_yaml()
    if args.output:
        Path(args.output).write_text(text)
    else:
        sys.stdout.write(text)
    return 0


def _render(args: argparse.Namespace) -> int:
    text = sys.stdin.read() if args.filename == "-" else Path(args.filename).read_text()
    try:
        sys.stdout.write(render_manifests(text, OperatorDefaults(triton_image=args.default_triton_image)))
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


def _dev(args: argparse.Namespace) -> int:
    from triton_operator.devmode import dev_down, dev_up

    if args.action == "up":
        return dev_up(example=Path(args.example) if args.example else None)
    return dev_down()


def _add_default_image(command: argparse.ArgumentParser) -> None:
    command.add_argument(
        "--default-triton-image",
        default=os.environ.get("TRITON_OPERATOR_DEFAULT_TRITON_IMAGE", DEFAULT_TRITON_IMAGE),
        help="image for InferenceServices that set no spec.triton.image "
        f"(env TRITON_OPERATOR_DEFAULT_TRITON_IMAGE; default {DEFAULT_TRITON_IMAGE})",
    )


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="triton-operator", description=__doc__)
    commands = top.add_subparsers(dest="command", required=True)

    run = commands.add_parser("run", help="run the operator (kubeconfig or in-cluster)")
    run.add_argument("--kubeconfig", help="kubeconfig file (default: $KUBECONFIG, ~/.kube/config, or in-cluster)")
    run.add_argument("-n", "--namespace", action="append", help="watch only this namespace (repeatable); default: all")
    run.add_argument("--workers", type=int, default=8, help="concurrent reconciles (default 8)")
    run.add_argument(
        "--autoscale-interval",
        type=float,
        default=2.0,
        help="seconds between the built-in autoscaler's decisions (default 2: Triton refreshes its metrics every 2 s)",
    )
    run.add_argument("--api-concurrency", type=int, default=8, help="concurrent Kubernetes API requests (default 8)")
    run.add_argument("--metrics-port", type=int, default=DEFAULT_METRICS_PORT, help="Prometheus metrics port, 0 to disable")
    run.add_argument("--health-port", type=int, default=DEFAULT_HEALTH_PORT, help="liveness endpoint port, 0 to disable")
    _add_default_image(run)
    run.add_argument(
        "--peering",
        metavar="NAME",
        help="run as one of several replicas through kopf's peering object NAME (a ClusterKopfPeering, or a "
        "KopfPeering in each --namespace): one replica works, the others stand by; default: standalone",
    )
    run.add_argument(
        "--priority",
        type=int,
        help="peering priority; the highest live one works (default: by start time, the oldest replica first, "
        "below 0 so that any explicit priority outranks it)",
    )
    run.add_argument(
        "--peering-lifetime",
        type=int,
        default=DEFAULT_LIFETIME_SECONDS,
        help=f"seconds a replica's peering record lives unrefreshed: how soon a standby takes over from a replica "
        f"that died without saying so (default {DEFAULT_LIFETIME_SECONDS}, kopf's)",
    )
    run.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    run.set_defaults(func=_run)

    crds = commands.add_parser("crds", help="print the CustomResourceDefinition generated from the API models")
    crds.add_argument("-o", "--output", help="write to this file instead of stdout")
    crds.set_defaults(func=_crds)

    render = commands.add_parser("render", help="print exactly what would be applied for InferenceServices, offline")
    render.add_argument("-f", "--filename", required=True, help="manifest file with InferenceServices, or - for stdin")
    _add_default_image(render)
    render.set_defaults(func=_render)

    dev = commands.add_parser("dev", help="a local cluster: control plane, fake GPU nodes and the operator")
    dev.add_argument("action", choices=["up", "down"])
    dev.add_argument(
        "--example",
        default="examples/quickstart.yaml",
        help="InferenceService to apply and wait for after `up` (default examples/quickstart.yaml; '' for none)",
    )
    dev.set_defaults(func=_dev)
    return top


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
