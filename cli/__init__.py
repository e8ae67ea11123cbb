"""Command line for operators: ``python -m cli <command>`` (see ``python -m cli --help``)."""
