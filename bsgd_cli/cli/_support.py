"""The command line's boundary: one-line errors, safe printing, option parsers, signals, liveness.

Everything a command needs to turn the library's results and errors into lines for a person:

* :class:`OneLineErrors`: a bad option (a value out of range, a missing option) is one ``error:``
  line and exit code 2, like the library's own refusals, instead of a framed usage panel;
* :func:`say`: every message goes out with control characters escaped (a file name holding a newline
  cannot split a line or forge one) and without Rich markup (``[red]`` in a name stays as typed);
* :func:`number`: the option parser that applies a :class:`bsgd_cli.checks.Bounds`;
* :func:`handle_signals` / :func:`exit_code_for`: SIGTERM is handled like Ctrl-C (exit 143);
* :class:`Heartbeat`: with ``-q`` a long job still prints that it is alive, once a minute;
* :func:`allow_quick_end` / :func:`end_now`: a command whose work is all written may end the process
  without the interpreter's teardown.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any, NoReturn

import typer
from rich.console import Console
from rich.text import Text
from typer.core import TyperGroup

try:  # typer 0.2x vendors click; older releases use the click package
    from typer._click.exceptions import ClickException
except ImportError:  # pragma: no cover - depends on the installed typer
    from click.exceptions import ClickException  # type: ignore[no-redef,assignment]

from ..checks import Bounds
from ..errors import BsgdError, Interrupted

EXIT_OK, EXIT_SOME_FAILED, EXIT_USAGE, EXIT_INTERRUPTED, EXIT_TERMINATED = 0, 1, 2, 130, 143
HEARTBEAT_SECONDS = 60.0
"""With -q (or --json) a long job prints one 'working' line at most this often."""

console = Console(stderr=True, soft_wrap=True)  # one line per message, never wrapped mid-path in logs
out = Console()
_BIDI_CONTROLS = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u200e\u200f\u061c")


def printable(text: str) -> str:
    """``text`` with every character that could break or disguise a line written as an escape.

    Control characters (newline, carriage return, escape ...), line and paragraph separators and
    bidirectional overrides become ``\\n``, ``\\x1b``, ``\\u2028`` ...; a byte of a file name that is
    not UTF-8 (held by Python as a lone surrogate) becomes ``\\xNN``, that byte.
    """
    if text.isprintable():
        return text
    pieces = []
    for char in text:
        code = ord(char)
        if 0xDC80 <= code <= 0xDCFF:
            pieces.append(f"\\x{code - 0xDC00:02x}")
        elif char.isprintable() and char not in _BIDI_CONTROLS:
            pieces.append(char)
        elif char == "\n":
            pieces.append("\\n")
        elif char == "\r":
            pieces.append("\\r")
        elif char == "\t":
            pieces.append("\\t")
        elif code < 0x100:
            pieces.append(f"\\x{code:02x}")
        else:
            pieces.append(f"\\u{code:04x}")
    return "".join(pieces)


def plain(text: object) -> Text:
    """A table cell or title: escaped, and never read as Rich markup."""
    return Text(printable(str(text)))


def say(label: str, text: str, style: str = "") -> None:
    """One line on stderr: a coloured ``label`` and the (escaped, markup-free) ``text``."""
    line = Text.assemble((label, style or "bold"), " ", printable(text)) if label else Text(printable(text))
    console.print(line, highlight=False)


class OneLineErrors(TyperGroup):
    """Usage errors (a bad or missing option) as one ``error:`` line and exit code 2."""

    def main(self, args: Sequence[str] | None = None, prog_name: str | None = None, complete_var: str | None = None,
             standalone_mode: bool = True, windows_expand_args: bool = True, **extra: Any) -> Any:
        try:
            code = super().main(args, prog_name, complete_var, standalone_mode=False,
                                windows_expand_args=windows_expand_args, **extra)
        except ClickException as exc:
            if type(exc).__name__ != "NoArgsIsHelpError":  # that one has already shown the help
                context = getattr(exc, "ctx", None)
                hint = f" (see '{context.command_path} --help')" if context is not None else ""
                say("error:", f"{exc.format_message()}{hint}", "bold red")
            if not standalone_mode:
                raise
            sys.exit(exc.exit_code)
        if code == EXIT_INTERRUPTED and _received.get("signum") == signal.SIGTERM:
            code = EXIT_TERMINATED  # SIGTERM outside a command body, which typer reports as 130
        if standalone_mode:
            sys.exit(code if isinstance(code, int) else EXIT_OK)
        return code


def number(bounds: Bounds) -> Callable[[str], float | int]:
    """An option parser: the text as a number within ``bounds``, else a one-line usage error."""

    def parse(text: str) -> float | int:
        try:
            value: float | int = int(text) if bounds.integer else float(text)
        except ValueError:
            raise typer.BadParameter(f"{text!r} is not {'a whole number' if bounds.integer else 'a number'}") from None
        problem = bounds.problem(value, text)
        if problem is not None:
            raise typer.BadParameter(problem)
        return value

    return parse


def one_of(*allowed: int) -> Callable[[str], int]:
    """An option parser for a few whole numbers (``--bit-depth 8|16``)."""

    def parse(text: str) -> int:
        if text.strip() not in {str(value) for value in allowed}:
            raise typer.BadParameter(f"must be {' or '.join(str(value) for value in allowed)}, got {text}")
        return int(text)

    return parse


# ------------------------------------------------------------------------------------------ signals
_received: dict[str, int] = {}


def _on_sigterm(signum: int, _frame: Any) -> None:
    _received["signum"] = signum
    raise Interrupted(signum)


def handle_signals() -> None:
    """SIGTERM (``timeout``, ``docker stop``, systemd) interrupts like Ctrl-C: the same clean stop,
    writes in flight finished, and exit code 143. Only the main thread may install it."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _on_sigterm)


def exit_code_for(interrupt: KeyboardInterrupt) -> int:
    return EXIT_TERMINATED if getattr(interrupt, "signum", signal.SIGINT) == signal.SIGTERM else EXIT_INTERRUPTED


def interrupt_word(interrupt: KeyboardInterrupt) -> str:
    return "terminated (SIGTERM)" if exit_code_for(interrupt) == EXIT_TERMINATED else "interrupted"


@contextlib.contextmanager
def user_errors(
    on_interrupt: str = "finished files are complete; rerun the same command to continue",
) -> Iterator[None]:
    """Library errors become one line and exit code 2; Ctrl-C exit code 130, SIGTERM 143."""
    try:
        yield
    except BsgdError as exc:
        say("error:", str(exc), "bold red")
        raise typer.Exit(EXIT_USAGE) from None
    except KeyboardInterrupt as exc:
        say(f"{interrupt_word(exc)}:", on_interrupt, "yellow")
        raise typer.Exit(exit_code_for(exc)) from None


# ---------------------------------------------------------------------------------------- liveness
class Heartbeat:
    """Shows that a long job with hidden progress (-q, --json) is alive: one line on stderr at most
    every :data:`HEARTBEAT_SECONDS`, saying what it is doing."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self.started = self.last = time.monotonic()

    def beat(self, doing: Callable[[], str]) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if now - self.last >= HEARTBEAT_SECONDS:
            self.last = now
            minutes, seconds = divmod(int(now - self.started), 60)
            say("working:", f"{doing()} ({minutes} min {seconds:02d} s so far)", "dim")


_quick_end = threading.Event()


def allow_quick_end() -> None:
    """Say that the command's outputs are all written and its messages printed: :func:`quick_end_allowed`."""
    _quick_end.set()


def quick_end_allowed() -> bool:
    """True once :func:`allow_quick_end` ran, outside a torchrun job (which sets ``WORLD_SIZE``)."""
    return _quick_end.is_set() and "WORLD_SIZE" not in os.environ


def end_now(code: object) -> NoReturn:
    """End the process with ``code`` (a :class:`SystemExit` code) without the interpreter's teardown.

    The ``atexit`` handlers run and the output streams are flushed, as at a normal exit; what is
    skipped is freeing every module and object one by one, which takes a noticeable share of a short
    command once torch is loaded (docs/NOTES.md).
    """
    if isinstance(code, str):  # SystemExit("text") prints the text and exits 1
        sys.stderr.write(code + "\n")
    status = 0 if code is None else code if isinstance(code, int) else 1
    atexit._run_exitfuncs()  # what a normal exit runs first (CPython's own function; it has no public name)
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(status)
