"""`python -m tridesign` is the `tridesign` command."""

from tridesign.cli.main import main

main()
