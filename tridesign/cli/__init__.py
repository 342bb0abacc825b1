"""The `tridesign` command: thin wrappers over library functions, one module per command group."""
