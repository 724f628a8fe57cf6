"""Errors a user can fix: a config field, a flag, a file, the data, a run.

The command lines print them as one line, `error: <message>`, and exit with
status 2, without a traceback (`JAXSEG_TRACEBACK=1` shows it); anything else
is a bug and keeps its traceback. Each subclasses the built-in error it
refines, so `except ValueError` still catches `InvalidInput`.
"""


class UserError(Exception):
  """Something the user can fix; the message names the key, file or example."""


class InvalidInput(UserError, ValueError):
  """A config field, flag, file's content or run that cannot be used as given."""


class MissingInput(UserError, FileNotFoundError):
  """A file or directory the command needs does not exist."""
