"""``python -m kubetune.cli``: the same as the ``kubetune`` console script."""

from kubetune.cli import main

main()
