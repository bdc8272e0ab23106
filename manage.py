#!/usr/bin/env python
"""Django's command-line utility for Cyclecount."""

import os
import sys


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    from django.core.management import execute_from_command_line

    from config.env import ConfigurationError

    try:
        execute_from_command_line(sys.argv)
    except ConfigurationError as error:
        # One clear line, not a traceback: the operator must see which variable is wrong.
        sys.stderr.write(f"cyclecount: configuration error: {error}\n")
        sys.exit(2)


if __name__ == "__main__":
    main()
