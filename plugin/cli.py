"""The `groupspec` command: every command's arguments, in one table of parsers. A command's code (and what it
needs: the HTTP stack, rich, the service) is imported only when that command runs, so `groupspec replay`
starts with the engine alone.

Exit codes: 0 ok, 1 a difference or failure found, 2 usage or config error (`GroupspecError.exit_code`).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from importlib import import_module
from importlib.metadata import PackageNotFoundError, version

from groupspec.middleware.errors import GroupspecError


def _lazy(target: str):
    """`"module:function"` (relative to groupspec.plugin), imported when the command runs."""

    def run(args: argparse.Namespace) -> int:
        module, function = target.split(":")
        return getattr(import_module(module, __package__), function)(args)

    return run


def _positive(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a positive whole number, got {text!r}")
    return int(text)


def _duration(text: str) -> str:
    from groupspec.middleware.config import duration_seconds

    try:
        duration_seconds(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def _group(text: str) -> tuple[str, str]:
    type_id, _, group_id = text.partition(":")
    if not type_id.isdigit() or type_id.startswith("0") or not group_id:
        raise argparse.ArgumentTypeError(f"expected TYPE:ID with a positive object type id, like 1:acme, got {text!r}")
    return type_id, group_id


ABOUT = """groupspec makes account and household ("group") context reliable in Customer.io for Segment and
RudderStack pipelines: every message gets its group as of the message's own time, is held to your data contract
(flag, strip or quarantine what breaks it) and becomes Customer.io Track API operations. Replay recorded streams
offline, serve a Segment-compatible HTTP endpoint, or hook the Python SDKs."""
PATHS = ("Paths in a config (service spool, quarantine, dead letters, a sqlite:/// store) are relative to the "
         "working directory the command runs in, not to the config file.")


def _version() -> str:
    try:
        return version("groupspec")
    except PackageNotFoundError:  # run from a source tree that is not installed
        return "unknown"


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="groupspec", description=ABOUT, epilog=PATHS)
    top.add_argument("--version", action="version", version=f"groupspec {_version()}")
    commands = top.add_subparsers(dest="command", required=True)

    replay = commands.add_parser("replay", help="run recorded JSONL streams through the contract, offline")
    replay.add_argument("inputs", nargs="+", metavar="INPUT", help=".jsonl or .jsonl.gz streams")
    replay.add_argument("--config", required=True)
    replay.add_argument("--source", help="source for messages without a known writeKey")
    replay.add_argument("--out", required=True, help="folder for the outputs")
    replay.add_argument("--expect", help="folder of expected outputs; exit 1 on a difference")
    replay.add_argument("--store", help="store url (default: memory://, whatever [store] says: a replay uses a "
                                        "persistent store only when named here)")
    replay.add_argument("--migrations", metavar="MAP.csv",
                        help="group id migrations applied at their `at` in stream time (docs/migrating-group-ids.md)")
    replay.set_defaults(run=_lazy(".replay_command:replay"))

    check = commands.add_parser("check-config", help="validate a config file; unset ${VARS} are errors")
    check.add_argument("config")
    check.add_argument("--allow-unset", action="store_true",
                       help="accept unset ${VARS} (e.g. CI without the secrets); serve still needs them")
    check.set_defaults(run=_lazy(".replay_command:check_config"))

    quarantine = commands.add_parser("quarantine", help="work with quarantined messages")
    verbs = quarantine.add_subparsers(dest="verb", required=True)
    q_replay = verbs.add_parser("replay", help="run quarantined messages through the current contract")
    q_replay.add_argument("file", help="a quarantine.jsonl")
    q_replay.add_argument("--config", required=True)
    q_replay.add_argument("--source")
    q_replay.add_argument("--out", required=True)
    q_replay.add_argument("--expect")
    q_replay.add_argument("--store", help="store url (default: memory://; with --deliver: [store] url, else "
                                          "sqlite:///groupspec.db)")
    q_replay.add_argument("--deliver", action="store_true",
                          help="also deliver the outputs to Customer.io (and the upstream), on the service's store")
    q_replay.set_defaults(run=_lazy(".replay_command:quarantine_replay"))
    for name, help_text in (("list", "one line per record: index, time, source, violation codes"),
                            ("show", "one record in full")):
        cmd = verbs.add_parser(name, help=help_text)
        if name == "show":
            cmd.add_argument("index", type=int, help="the record's number, as `list` prints it (1 is the first)")
        cmd.add_argument("file", nargs="?", help="a quarantine or dead-letter JSONL (default: from --config)")
        cmd.add_argument("--config", help="read the file's path from this config")
        cmd.add_argument("--dead-letter", action="store_true",
                         help="the dead letter ([customerio] dead_letter) instead of the quarantine")
        cmd.set_defaults(run=_lazy(f".quarantine_commands:{name}_records"))

    contract = commands.add_parser("contract", help="work with data contracts")
    contract_verbs = contract.add_subparsers(dest="verb", required=True)
    diff = contract_verbs.add_parser("diff", help="list contract changes; exit 1 when any is breaking")
    diff.add_argument("old", metavar="OLD.toml")
    diff.add_argument("new", metavar="NEW.toml")
    diff.add_argument("--plain", action="store_true", help="one line per change, even on a terminal")
    diff.set_defaults(run=_lazy(".contract_diff:run"))
    doc = contract_verbs.add_parser("doc", help="the contract as a page for the people who build segments")
    doc.add_argument("--config", required=True)
    doc.add_argument("--md", metavar="FILE", help="write it as Markdown (without --md or --html: to standard output)")
    doc.add_argument("--html", metavar="FILE", help="write it as a self-contained HTML page")
    doc.set_defaults(run=_lazy(".contract_doc.command:doc"))
    log = contract_verbs.add_parser("log", help="the contract's change log, newest first, each change classified")
    log.add_argument("files", nargs="*", metavar="CONTRACT_FILE", help="the versions, oldest first (dated by mtime)")
    log.add_argument("--git", metavar="FILE", help="the versions of FILE in its git history (dated by commit)")
    log.set_defaults(run=_lazy(".contract_doc.command:log"))

    report = commands.add_parser("report", help="group coverage of a replay output folder or a running service")
    report.add_argument("outdir", nargs="?", metavar="OUTDIR", help="a replay output folder")
    report.add_argument("--service", metavar="URL", help="read GET URL/report.json from a running service")
    report.add_argument("--token", help="the service's operator_token (default: $GROUPSPEC_OPERATOR_TOKEN)")
    report.add_argument("--config", help="names sources by write key and sets the [contract] freshness window")
    report.add_argument("--html", metavar="FILE", help="also write a self-contained HTML page")
    report.set_defaults(run=_lazy(".report.command:run"))

    backfill = commands.add_parser("backfill", help="build the group objects and relationships of historical data")
    backfill.add_argument("inputs", nargs="+", metavar="INPUT",
                          help="spec messages (.jsonl, .jsonl.gz) or person->group rows (.csv, .csv.gz, .jsonl)")
    backfill.add_argument("--config", required=True)
    backfill.add_argument("--source", help="source of rows, and of messages without a known writeKey")
    backfill.add_argument("--store", help="store url (default: [store] url, else sqlite:///groupspec.db; with "
                                          "--dry-run: memory://)")
    backfill.add_argument("--dry-run", action="store_true", help="write the operations to --out DIR, send nothing")
    backfill.add_argument("--out", metavar="DIR", help="dry run: customerio.jsonl, quarantine.jsonl, summary.json")
    backfill.add_argument("--checkpoint", metavar="FILE", help="resume file: a rerun skips what was delivered")
    backfill.add_argument("--checkpoint-every", type=_positive, default=1000, metavar="N",
                          help="send what is pending and save the checkpoint at least every N records (1000)")
    backfill.add_argument("--at", metavar="ISO", help="time of records without a timestamp (default: the start)")
    backfill.add_argument("--quiet", action="store_true", help="no progress bar")
    backfill.set_defaults(run=_lazy(".backfill.command:run"))

    verify = commands.add_parser("verify", help="compare Customer.io's objects with the store; exit 1 on drift")
    verify.add_argument("--config", required=True)
    verify.add_argument("--store", help="store url (default: [store] url, else sqlite:///groupspec.db)")
    which = verify.add_mutually_exclusive_group()
    which.add_argument("--sample", type=_positive, metavar="N", help="check N groups picked at random")
    which.add_argument("--group", type=_group, action="append", metavar="TYPE:ID", help="check this group (repeatable)")
    verify.add_argument("--json", metavar="FILE", help="also write the report as JSON")
    verify.add_argument("--html", metavar="FILE", help="also write a self-contained HTML page")
    verify.add_argument("--max-pages", type=_positive, metavar="N",
                        help="relationship pages read per object at most, overriding [customerio] verify_max_pages")
    verify.add_argument("--time-limit", type=_duration, metavar="DURATION",
                        help="read the App API this long at most (30m, 2h), overriding [customerio] verify_time_limit")
    verify.add_argument("--repair", action="store_true", help="send the Track API operations that fix the drift")
    verify.add_argument("--delete-unknown", action="store_true",
                        help="with --repair: also delete the relationships of people the store never saw in the group")
    verify.add_argument("--dry-run", action="store_true", help="with --repair: list the operations, send nothing")
    verify.set_defaults(run=_lazy(".verify.command:run"))

    groups = commands.add_parser("groups", help="work with group ids")
    group_verbs = groups.add_subparsers(dest="verb", required=True)
    migrate = group_verbs.add_parser("migrate", help="rename or merge group ids: the store, then Customer.io")
    migrate.add_argument("--config", required=True)
    migrate.add_argument("--map", required=True, metavar="MAP.csv",
                         help="rows object_type_id,old_id,new_id[,mode][,at]; mode: rename | merge")
    migrate.add_argument("--at", metavar="ISO", help="when rows without an at take effect (default: now)")
    migrate.add_argument("--store", help="store url, overriding [store] (default: sqlite:///groupspec.db)")
    migrate.add_argument("--dry-run", action="store_true", help="write the plan to --out DIR, change nothing")
    migrate.add_argument("--out", metavar="DIR", help="dry run: customerio.jsonl and migration.json")
    migrate.add_argument("--deliver", action="store_true", help="record the migrations and send the operations")
    migrate.add_argument("--keep-old", action="store_true",
                         help="keep the old Customer.io objects (with migrated_to) instead of deleting them")
    migrate.set_defaults(run=_lazy(".migrate.command:run"))

    store = commands.add_parser("store", help="work with the membership store")
    store_verbs = store.add_subparsers(dest="verb", required=True)
    compact = store_verbs.add_parser("compact", help="remove what [store] retention no longer keeps; print the sizes")
    compact.add_argument("--config", required=True)
    compact.add_argument("--store", help="store url (default: [store] url, else sqlite:///groupspec.db)")
    compact.set_defaults(run=_lazy(".store_commands:compact"))

    serve = commands.add_parser("serve", help="run the Segment-compatible HTTP service")
    serve.add_argument("--config", required=True)
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8080)
    serve.set_defaults(run=_lazy(".service.serve:run"))
    return top


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return args.run(args)
    except GroupspecError as exc:
        print(f"groupspec: {exc.label}: {exc}", file=sys.stderr)
        return exc.exit_code
    except (OSError, EOFError) as exc:  # unreadable input or output: say which, no traceback
        print(f"groupspec: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
