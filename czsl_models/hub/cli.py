"""The push command: `python -m czsl_models push`."""

from __future__ import annotations

import argparse

from ..inputs.arguments import print_error

# ------------------------------------------------------------------------------ CLI: push


def add_push_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of `push`."""
    parser.add_argument("directory", metavar="DIR", help="a checkpoint folder (config.json, model.safetensors, ...)")
    parser.add_argument("repo_id", metavar="REPO_ID", help="the Hub model repo, owner/name (created if needed)")
    parser.add_argument("--token", default=None, help="Hugging Face token (default: HF_TOKEN or the login cache)")
    parser.add_argument("--private", action="store_true", help="create the repo as private")
    parser.add_argument("--message", default=None, help="commit message")


def run_push_command(args: argparse.Namespace) -> int:
    """Publish a checkpoint folder to the Hugging Face Hub; the local folder is never changed."""
    from ..hub.publish import PublishError, push_checkpoint
    from ..models.checkpoints import CheckpointError

    try:
        url = push_checkpoint(args.directory, args.repo_id, token=args.token, private=args.private,
                              commit_message=args.message)
    except (PublishError, CheckpointError) as error:
        return print_error(str(error))
    print(f"Published {args.directory} to {url}")
    return 0
