"""Subcommands of the ``fastmnist`` command line, one module each (see ``fastmnist.cli``)."""
