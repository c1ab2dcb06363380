"""Studies: one package per domain, one module per command of ``diffdesign <domain> <verb>``.

Each command module has a docstring (first line: the help), optional ``DEFAULT_CONFIG`` and
``add_arguments(parser)``, and ``run(args) -> summary``; the ``diffdesign`` command finds
them (``diffdesign.cli``) and gives every one the same flags: ``--config``, ``--out``,
``--smoke``, ``--seed``, ``--quiet``. Rerunning a command into the same ``--out`` resumes it.
"""
