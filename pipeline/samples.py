"""Write the bundled sample HR images to a folder (pipeline.io.samples), so the quickstart
needs no download:

  python -m pipeline.samples --out quickstart/samples
"""

from __future__ import annotations

import sys

from pipeline import cli
from pipeline.io.samples import write_samples


def build_parser() -> cli.Parser:
    parser = cli.Parser(
        "python -m pipeline.samples",
        "Write the bundled sample HR images.",
        ["python -m pipeline.samples --out quickstart/samples"],
    )
    parser.add_argument("--out", required=True, help="folder to write photos/, holdout/, medical/ and satellite/ into")
    return parser


@cli.command
def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    for path in write_samples(args.out):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
