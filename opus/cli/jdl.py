"""``opus jdl ...``: the job definition registry from the command line.

It works on the files of JDL_DIR directly (run it on the server host, as a user who may write
JDL_DIR), not through a server's HTTP API: remote users and admins use ``/jdl`` (README, "The REST
interface") or the web client's editor and admin page for the same operations.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from opus.errors import ConfigurationError, OpusError
from opus.jobdef import JobDefinitionRegistry
from opus.jobdef.definition_files import InvalidDefinitionFile
from opus.jobdef.formats import read_definition, write_definition
from opus.settings import Settings


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    jdl = sub.add_parser("jdl", help="job definitions in JDL_DIR (its files, directly; not over HTTP): list, show, "
                         "convert, propose, validate, delete", description="Works on the files of JDL_DIR "
                         "directly, on the server host; remote clients use the /jdl API of the server.")
    actions = jdl.add_subparsers(dest="action", required=True, metavar="ACTION", help="what to do")
    actions.add_parser("list", help="the live definitions and their versions")
    show = actions.add_parser("show", help="print a definition (VOTable, WADL or JSON)")
    show.add_argument("name", help="the definition's name")
    show.add_argument("--format", default="json", choices=("json", "votable", "wadl"), help="the format "
                      "to print (default json)")
    show.add_argument("--version", default=None, help="a kept version (default: the live one)")
    show.add_argument("--proposal", action="store_true", help="the pending proposal of that name (with its "
                      "digest on stderr)")
    convert = actions.add_parser("convert", help="convert a definition file to another format (stdout)")
    convert.add_argument("file", help="a definition file: JSON, VOTable or WADL (told by its name or content)")
    convert.add_argument("--to", required=True, choices=("json", "votable", "wadl"), help="the format to write")
    propose = actions.add_parser("propose", help="propose a definition file (any format) for validation")
    propose.add_argument("file", help="a definition file: JSON, VOTable or WADL")
    propose.add_argument("--as", dest="proposer", default="admin", help="recorded as its proposer")
    actions.add_parser("proposals", help="the proposals waiting for validation (JSON lines, with their digest)")
    validate = actions.add_parser("validate", help="make a proposal live (the version it replaces is kept)")
    validate.add_argument("name", help="the proposal's name")
    validate.add_argument("--digest", required=True,
                          help="the SHA-256 of the proposal you reviewed, as `opus jdl proposals` or "
                               "`opus jdl show NAME --proposal` print it: a proposal changed since is refused")
    for name, text in (("withdraw", "drop a proposal"), ("delete", "stop offering a definition (kept as a version)"),
                       ("versions", "the kept versions of a definition")):
        actions.add_parser(name, help=text).add_argument("name", help="the definition's name")


def run(settings: Settings, args: argparse.Namespace) -> int:
    registry = JobDefinitionRegistry(settings.JDL_DIR)
    try:
        if args.action == "list":
            for d in registry.all():
                print(f"{d.name:24} {d.version:10} {d.description[:60]}")
            for path in registry.misnamed_files():
                print(f"opus: {path} is not offered: its name does not fit (a letter, then letters, digits, "
                      "'_' or '-'; no dots)", file=sys.stderr)
        elif args.action == "show" and args.proposal:
            jobdef, meta = registry.proposal(args.name)
            sys.stdout.write(write_definition(jobdef, args.format).decode())
            print(f"proposed by {meta.get('proposer')} on {meta.get('proposed')}; digest {meta['digest']}",
                  file=sys.stderr)
        elif args.action == "show":
            jobdef = registry.get(args.name, args.version)
            sys.stdout.write(write_definition(jobdef, args.format).decode())
        elif args.action == "convert":
            data = Path(args.file).read_bytes()
            jobdef = read_definition(data, filename=args.file)
            sys.stdout.write(write_definition(jobdef, args.to).decode())
        elif args.action == "propose":
            path = Path(args.file)
            meta = registry.propose(read_definition(path.read_bytes(), filename=path.name), args.proposer)
            print(f"proposed {meta['name']} version {meta['version']} (digest {meta['digest']}): "
                  f"`opus jdl validate {meta['name']} --digest {meta['digest']}` makes it live")
        elif args.action == "proposals":
            for p in registry.proposals():
                print(json.dumps(p))
        elif args.action == "validate":
            jobdef = registry.validate(args.name, args.digest)
            print(f"{jobdef.name} version {jobdef.version} is live")
        elif args.action == "withdraw":
            registry.withdraw(args.name)
            print(f"the proposal {args.name} is withdrawn")
        elif args.action == "delete":
            gone = registry.delete(args.name)
            print(f"{args.name} is no longer offered; " + (f"version {gone.version} is kept" if gone else
                                                           "its invalid file was removed"))
        elif args.action == "versions":
            for v in registry.versions(args.name):
                print(f"{v['version']:10} kept {v['kept']}")
    except OSError as exc:
        print(f"opus: {exc}", file=sys.stderr)
        return 2
    except (OpusError, ConfigurationError) as exc:  # an invalid file: its path and reason (opus.jobdef.health)
        why = f"{exc.path}: {exc.reason}" if isinstance(exc, InvalidDefinitionFile) else getattr(exc, "message", exc)
        print(f"opus: {why}", file=sys.stderr)
        return 1
    return 0
