"""CLI subcommands: thin shells that parse arguments and call library functions."""
