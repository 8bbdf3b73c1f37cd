"""User-facing errors: one line that names the file and the fix.

Everything that comes from bad input (a missing frame, an RGB mask, a wrong size) raises
`InputError`; the CLI prints its message on one line and exits with status 2 instead of
showing a traceback.
"""


class InputError(ValueError):
  """Bad user input. The message names the offending file and says how to fix it."""
