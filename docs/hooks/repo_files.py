"""MkDocs hook: the repository's figures (``images/``) are part of the site, so that a page shows
``images/NAME.png`` without a second copy of each figure inside ``docs/``."""

from pathlib import Path

from mkdocs.structure.files import File

REPO = Path(__file__).resolve().parents[2]
FOLDERS = ("images",)


def on_files(files, config):
    for folder in FOLDERS:
        for path in sorted((REPO / folder).iterdir()):
            if path.is_file() and not path.name.startswith("."):
                files.append(
                    File(
                        f"{folder}/{path.name}",
                        src_dir=str(REPO),
                        dest_dir=config["site_dir"],
                        use_directory_urls=config["use_directory_urls"],
                    )
                )
    return files
