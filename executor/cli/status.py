"""`executor status`: what a running instance is doing (an operator token)."""

from __future__ import annotations

import argparse

from executor.cli.http import Api
from executor.cli.output import print_json
from executor.cli.parsing import Subcommands, client_command


def register(commands: Subcommands) -> None:
    client_command(commands, "status", "what a running instance is doing: its tasks and its pool (operator token)",
                   _status)


def _status(api: Api, args: argparse.Namespace) -> int:
    current = api.call("GET", "/v1/status")
    if args.json:
        print_json(current)
        return 0
    worker, pool = current["worker"], current["pool"]
    print(f"instance {current['instance']}: {worker['running']}/{worker['concurrency']} tasks running")
    if pool is None:
        print("pool: off")
    else:
        claims = pool["hits"] + pool["misses"]
        rate = f"{100 * pool['hits'] / claims:.0f}%" if claims else "-"
        refill = f"{1000 * pool['refill_seconds_total'] / pool['refills']:.0f} ms" if pool["refills"] else "-"
        print(f"pool: {pool['containers']} ready, {pool['starting']} starting, {pool['shelves']} shelves; "
              f"hits {pool['hits']}, misses {pool['misses']} (hit rate {rate}); discarded {pool['discarded']}; "
              f"mean refill {refill}")
    return 0
