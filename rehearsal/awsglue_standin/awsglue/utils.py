"""``getResolvedOptions`` as Glue's: argparse over ``argv[1:]``, each requested name a required ``--name``."""

from __future__ import annotations

import argparse

BOOKMARK_OPTION = "job-bookmark-option"
BOOKMARK_CHOICES = ("job-bookmark-enable", "job-bookmark-disable", "job-bookmark-pause")
CONTINUATION_OPTION = "continuation-option"


class GlueArgumentError(Exception):
    pass


class GlueArgumentParser(argparse.ArgumentParser):
    def error(self, message):  # noqa: D401 (Glue raises instead of exiting)
        raise GlueArgumentError(message)


def getResolvedOptions(args, options):  # noqa: N802 (Glue's name)
    if BOOKMARK_OPTION in options or CONTINUATION_OPTION in options:
        raise RuntimeError(f"Using reserved arguments {BOOKMARK_OPTION} / {CONTINUATION_OPTION} is not allowed")
    parser = GlueArgumentParser(allow_abbrev=False)
    parser.add_argument("--" + BOOKMARK_OPTION, choices=BOOKMARK_CHOICES, required=False)
    parser.add_argument("--" + CONTINUATION_OPTION, required=False)
    parser.add_argument("--JOB_ID", required=False)
    parser.add_argument("--JOB_RUN_ID", required=False)
    parser.add_argument("--TempDir", required=False)
    for option in options:
        if option in ("JOB_ID", "JOB_RUN_ID", "TempDir"):
            continue
        parser.add_argument("--" + option, required=True)
    parsed, _ = parser.parse_known_args(list(args)[1:])
    resolved = vars(parsed)
    for option in ("JOB_ID", "JOB_RUN_ID", "TempDir"):
        if option in options and resolved.get(option) is None:
            raise GlueArgumentError(f"the following arguments are required: --{option}")
    return resolved


__all__ = ["getResolvedOptions", "GlueArgumentError"]
