"""CLI commands (download)."""

from __future__ import annotations

import click

from spanqa.cli._common import quiet_option

# Kept here rather than imported from spanqa.download so --help needs no library import.
ASSET_NAMES = ("squad1", "squad2", "squad-v1.1-dev")


@click.command("download")
@click.argument("asset", type=click.Choice(ASSET_NAMES))
@click.option(
    "--dir",
    "directory",
    type=click.Path(file_okay=False, path_type=str),
    default=None,
    help="Where to put it: the checkpoint directory (squad1/squad2) or the directory for "
    "dev-v1.1.json. Default: under $SPANQA_HOME or ~/.cache/spanqa.",
)
@click.option(
    "--url",
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
    from pathlib import Path

    from spanqa import download as dl

    spec = dl.get_asset(asset)
    if directory is None:
        dest = dl.default_path(asset)
    elif spec.kind == "file":
        dest = Path(directory).expanduser() / spec.filename
    else:
        dest = Path(directory).expanduser()
    dest = dest.absolute()
    if not force and not url and dl.is_complete(asset, dest):
        click.echo(f"{asset} is already in {dest} (use --force to download it again)")
        return
    path = dl.download(asset, dest=dest, url=url, mirror=mirror)
    what = "checkpoint" if spec.kind == "checkpoint" else spec.filename
    click.echo(f"{asset}: {what} ready in {path}")


COMMANDS: list[click.Command] = [download_command]
