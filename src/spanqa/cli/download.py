"""CLI commands (download)."""

from __future__ import annotations

from pathlib import Path

import click

from spanqa.cli._common import input_path, output_path, quiet_option

# Kept here rather than imported from spanqa.download so --help needs no library import.
ASSET_NAMES = ("squad1", "squad2", "squad-v1.1-dev")


@click.command("download")
@click.argument("asset", type=click.Choice(ASSET_NAMES))
@click.option(
    "--dir",
    "directory",
    type=output_path("download", idempotent=True, locate=lambda params, value: _destination(params["asset"], value)),
    default=None,
    help="Where to put it: the checkpoint directory (squad1/squad2) or the directory for "
    "dev-v1.1.json. Default: under $SPANQA_HOME or ~/.cache/spanqa.",
)
@click.option(
    "--url",
    type=input_path("file", path_type=str),
    default=None,
    metavar="URL|PATH",
    help="Fetch from this full URL instead, or use a local file (path or file:// URL) downloaded elsewhere.",
)
@click.option(
    "--mirror",
    default=None,
    metavar="BASE_URL",
    envvar="SPANQA_MIRROR",
    show_envvar=True,
    help="Fetch {BASE_URL}/{filename} instead of the official location.",
)
@click.option("--force", is_flag=True, help="Download again even when a complete copy is there.")
@quiet_option
def download_command(asset: str, directory: str | None, url: str | None, mirror: str | None, force: bool) -> None:
    """Download a fine-tuned SpanBERT checkpoint (squad1, squad2) or the SQuAD v1.1 dev set.

    Archives are checksummed and extracted safely; the sha256 of what was fetched is recorded
    beside the checkpoint. Offline? Fetch the file elsewhere and pass it with --url PATH.
    """
    from spanqa import download as dl

    spec = dl.get_asset(asset)
    dest = dl.default_path(asset).absolute() if directory is None else _destination(asset, directory)[0]
    if not force and dl.is_complete(asset, dest):
        click.echo(f"{asset} is already in {dest} (use --force to download it again)")
        return
    path = dl.download(asset, dest=dest, url=url, mirror=mirror)
    what = "checkpoint" if spec.kind == "checkpoint" else spec.filename
    click.echo(f"{asset}: {what} ready in {path}")


def _destination(asset: str, directory) -> tuple[Path, str, bool]:
    """Where --dir puts ``asset``: the checkpoint directory itself, or the data file inside it."""
    from spanqa.download import DATASET_KIND, get_asset

    spec = get_asset(asset)
    base = Path(directory).expanduser().absolute()
    if spec.kind == "file":
        return base / spec.filename, DATASET_KIND, True
    return base, "checkpoint", False


COMMANDS: list[click.Command] = [download_command]
