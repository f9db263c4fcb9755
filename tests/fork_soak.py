"""A busy hooked parent forking children (run by tests/test_sdk_fork.py in a process of its own).

`python fork_soak.py SPEC.json`: the parent installs groupspec on segment.analytics' default client (uploading to
the capture server `host`), keeps tracking from a thread of its own, and forks `children` processes `rounds` times
(multiprocessing's `fork`). Each child makes a fresh client as a post-fork hook does, tracks `per_child`
messages, and flushes. Half the children drop the module's default client (the module's hook hooks the new one,
on the parent's store object); the others make a `Client` and `install` it (a store of their own, on the same file
or server). It writes `out`: the messageIds the SDK accepted, and how each child ended (exit code, or hung: still
running `wait` seconds after its round started, then killed)."""

from __future__ import annotations

import json
import multiprocessing
import os
import sys
import threading
import time

import segment.analytics as analytics
from segment.analytics.client import Client

from groupspec.middleware import install
from groupspec.middleware.sdk import hook_of
from groupspec.middleware.config import load_config

EXIT_HOOK_FAILED = 3  # a child's hook could not judge some messages (e.g. its store did not answer)


def child(spec: dict, config, round_: int, index: int) -> None:
    if index % 2 == 0:  # a post-fork hook dropping the default client: the module makes (and groupspec hooks) a new one
        analytics.default_client = None
        track, flush = analytics.track, analytics.flush
    else:  # a post-fork hook making a client of its own
        client = install(Client(spec["write_key"], host=spec["host"], upload_interval=0.05), config,
                         store=spec["store"])
        track, flush = client.track, client.flush
    sent = []
    for k in range(spec["per_child"]):
        message_id = f"c{round_}-{index}-{k}"
        ok, _ = track(f"child_{index}", "Order Placed", {"k": k}, context={"groupId": f"hh_{index}"},
                      message_id=message_id)
        if ok:
            sent.append(message_id)
    flush()
    with open(os.path.join(spec["folder"], f"child-{round_}-{index}.json"), "w") as out:
        json.dump(sent, out)
    hooked = analytics.default_client if index % 2 == 0 else client
    os._exit(EXIT_HOOK_FAILED if hook_of(hooked).failures else 0)


def main(path: str) -> None:
    spec = json.loads(open(path).read())
    config = load_config(spec["config"])
    analytics.write_key, analytics.host = spec["write_key"], spec["host"]
    install(analytics, config, store=spec["store"])
    sent: list[str] = []
    stop = threading.Event()

    def busy() -> None:  # the parent's app, tracking all along: its consumer is mid-transaction at most forks
        n = 0
        while not stop.is_set():
            message_id = f"p{n}"
            ok, _ = analytics.track("parent", "Order Placed", {"n": n}, context={"groupId": "hh_parent"},
                                    message_id=message_id)
            if ok:
                sent.append(message_id)
            if n % 50 == 0 and analytics.group("parent", "hh_parent", {"plan_type": "basic"}, message_id=f"g{n}")[0]:
                sent.append(f"g{n}")
            n += 1
            time.sleep(0.0005)

    thread = threading.Thread(target=busy)
    thread.start()
    time.sleep(0.3)
    fork = multiprocessing.get_context("fork")
    ended = []
    for round_ in range(spec["rounds"]):
        procs = [fork.Process(target=child, args=(spec, config, round_, i)) for i in range(spec["children"])]
        for proc in procs:
            proc.start()
            time.sleep(0.005)  # forks spread over the parent's batches
        deadline = time.monotonic() + spec["wait"]
        for i, proc in enumerate(procs):
            proc.join(max(0.0, deadline - time.monotonic()))
            hung = proc.is_alive()
            if hung:
                proc.kill()
                proc.join()
            ended.append({"round": round_, "child": i, "exitcode": None if hung else proc.exitcode, "hung": hung})
        if any(e["hung"] for e in ended):
            break  # a hang is the answer; no need for more rounds
    stop.set()
    thread.join()
    analytics.flush()
    with open(spec["out"], "w") as out:
        json.dump({"sent": sent, "children": ended, "failures": hook_of(analytics.default_client).failures}, out)


if __name__ == "__main__":
    main(sys.argv[1])
