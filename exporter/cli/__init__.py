"""The command line: the exporter's subcommands and the container health check."""
