"""structlog set-up: JSON lines in production, a readable console in development.

A traceback never carries local variables, in either format: the frames of a sign-in or a
password reset hold the password, tokens and hashes, and structlog's defaults (its JSON
traceback; rich or better-exceptions on the console) print every frame's locals. It is
also bounded (frames per exception, exceptions per chain, characters per message), so one
error costs a log line, not megabytes written while the event loop waits.
"""

from __future__ import annotations

import logging
import sys
from typing import Any, TextIO

import orjson
import structlog
from structlog.tracebacks import ExceptionDictTransformer
from structlog.typing import ExcInfo

from taskapi.core.config import Settings

MAX_TRACEBACK_FRAMES = 20
"""Per exception: the outermost and innermost halves are kept, the middle is counted."""
MAX_CHAINED_EXCEPTIONS = 5
"""An exception, its causes and contexts, and the members of an exception group."""
MAX_EXCEPTION_MESSAGE_CHARS = 2000


def configure_logging(settings: Settings, *, cache_loggers: bool = False) -> None:
    level = logging.getLevelName(settings.log_level)
    shared: list[structlog.types.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.StackInfoRenderer(),
    ]
    if settings.is_production:
        processors: list[structlog.types.Processor] = [
            *shared,
            structlog.processors.ExceptionRenderer(exception_as_dicts),
            structlog.processors.JSONRenderer(serializer=orjson.dumps),
        ]
        factory: Any = structlog.BytesLoggerFactory()
    else:
        processors = [
            *shared,
            structlog.dev.ConsoleRenderer(
                colors=sys.stderr.isatty(), exception_formatter=write_exception_as_text
            ),
        ]
        factory = structlog.PrintLoggerFactory(file=sys.stderr)
    structlog.configure(
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=factory,
        cache_logger_on_first_use=cache_loggers,
    )
    logging.basicConfig(level=level, stream=sys.stderr, format="%(levelname)s %(name)s %(message)s")
    logging.getLogger("uvicorn.access").disabled = True


_TO_DICTS = ExceptionDictTransformer(show_locals=False, max_frames=MAX_TRACEBACK_FRAMES)


def exception_as_dicts(exc_info: ExcInfo) -> list[dict[str, Any]]:
    """structlog's JSON traceback, without locals and bounded: the raised exception first,
    then what caused it."""
    return _bounded(_TO_DICTS(exc_info))


def _bounded(stacks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    kept = stacks[:MAX_CHAINED_EXCEPTIONS]
    for stack in kept:
        stack["exc_value"] = _clip(stack["exc_value"])
        stack["exc_notes"] = [_clip(note) for note in stack["exc_notes"][:MAX_CHAINED_EXCEPTIONS]]
        stack["exceptions"] = [
            _bounded(member) for member in stack["exceptions"][:MAX_CHAINED_EXCEPTIONS]
        ]
    return kept


def _clip(text: str) -> str:
    if len(text) <= MAX_EXCEPTION_MESSAGE_CHARS:
        return text
    return f"{text[:MAX_EXCEPTION_MESSAGE_CHARS]}… ({len(text)} characters)"


def write_exception_as_text(sio: TextIO, exc_info: ExcInfo) -> None:
    """The same bounded traceback for the console, in the familiar Python layout."""
    sio.write("\n")
    sio.writelines(_text_lines(exception_as_dicts(exc_info), indent=""))


def _text_lines(stacks: list[dict[str, Any]], *, indent: str) -> list[str]:
    lines: list[str] = []
    # Python prints the root cause first and the exception that was raised last.
    for position, stack in enumerate(reversed(stacks)):
        if position:
            lines.append(
                f"\n{indent}The above exception was the direct cause of the following "
                "exception:\n\n"
                if stacks[len(stacks) - position]["is_cause"]
                else f"\n{indent}During handling of the above exception, another exception "
                "occurred:\n\n"
            )
        lines.append(f"{indent}Traceback (most recent call last):\n")
        for frame in stack["frames"]:
            if frame["lineno"] < 0:  # structlog's stand-in for the frames it left out
                lines.append(f"{indent}  ... {frame['name']}\n")
                continue
            where = f'"{frame["filename"]}", line {frame["lineno"]}, in {frame["name"]}'
            lines.append(f"{indent}  File {where}\n")
        lines.append(f"{indent}{stack['exc_type']}: {stack['exc_value']}\n")
        lines.extend(f"{indent}{note}\n" for note in stack["exc_notes"])
        for number, member in enumerate(stack["exceptions"], start=1):
            lines.append(f"{indent}  +---- {number} ----\n")
            lines.extend(_text_lines(member, indent=indent + "  | "))
    return lines
