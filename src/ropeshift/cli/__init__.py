"""Command-line interface: ``ropeshift <subcommand>``; see ``ropeshift --help``."""
