"""The ``genir`` command line: thin Typer commands over the library.

* :mod:`genir.cli.common`: consoles, option types, error handling, terminal setup; imports no command module.
* :mod:`genir.cli.continual`: the ``continual`` command (imports :mod:`~genir.cli.common` only).
* :mod:`genir.cli.main`: the app (the ``genir`` console script, ``genir.cli.main:app``), its own
  commands, and the registration of the commands defined elsewhere.
"""
