"""Errors a user can fix: a config field, a flag, a file, the data, a run.

The command lines print them as one line, `error: <message>`, and exit with
status 2, without a traceback (`JAXSEG_TRACEBACK=1` shows it); anything else
is a bug and keeps its traceback. Each subclasses the built-in error it
refines, so `except ValueError` still catches `InvalidInput`.
"""

import errno


class UserError(Exception):
  """Something the user can fix; the message names the key, file or example."""


class InvalidInput(UserError, ValueError):
  """A config field, flag, file's content or run that cannot be used as given."""


class MissingInput(UserError, FileNotFoundError):
  """A file or directory the command needs does not exist."""


class ExportFailed(UserError, RuntimeError):
  """An export format's converter or runtime refused a network, or the export
  answered differently from the training code; the message names the run or
  config and the format."""


def summary(error: BaseException, limit: int = 300) -> str:
  """One line for an error from a library (a converter's multi-line report
  keeps its first `error:` line)."""
  lines = [line.strip() for line in str(error).splitlines() if line.strip()]
  marked = [line.rsplit("error: ", 1)[1] for line in lines if "error: " in line]
  text = (marked or lines or [type(error).__name__])[0]
  return text if len(text) <= limit else text[: limit - 3] + "..."


class WriteFailed(UserError, OSError):
  """A file or checkpoint could not be written (no space left, a file-size
  limit, no permission); the message names the path. What was written before
  it is intact."""


WRITE_ERRNOS = frozenset(
  getattr(errno, name)
  for name in ("ENOSPC", "EDQUOT", "EFBIG", "EACCES", "EPERM", "EROFS")
  if hasattr(errno, name)
)


def write_failed(path: str, error: BaseException) -> WriteFailed:
  """`WriteFailed` naming `path` and why, for an error raised writing it."""
  reason = getattr(error, "strerror", None) or summary(error, limit=200)
  return WriteFailed(f"could not write {path}: {reason}")
