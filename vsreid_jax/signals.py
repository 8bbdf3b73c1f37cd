"""SIGINT and SIGTERM: both stop a run the same way, with a clean exit.

    with signals.handled():       # the CLI wraps every command in this
      ...                         # either signal raises `Interrupted` (a KeyboardInterrupt)
      signals.check()             # at safe points: raises a signal that could not be raised at once

`Interrupted` subclasses KeyboardInterrupt, so every `except KeyboardInterrupt` cleanup (the
results writer removing its temporary folder, the training loops saving a checkpoint) runs for
SIGTERM exactly as for Ctrl-C. The exit status is 128 + the signal number (130, 143).

Two ways an interrupted JAX process went wrong, both handled here:
- A signal that arrives while the garbage collector runs is raised inside JAX's gc callback,
  where Python swallows it ("Exception ignored in _xla_gc_callback" and a traceback on stderr)
  and the run goes on. Signals during a collection are held and raised again once it ends.
- XLA compiles on a background thread pool. Interrupted while a jitted function compiles, the
  interpreter then shuts down under the running compile, which dereferences the freed client
  (`SingleDeviceSharding::Create` on a dead device: a segfault at exit, about half the time).
  `hard_exit` ends the process after our own cleanup has run, without interpreter finalisation.
"""
import contextlib
import gc
import os
import signal
import sys
import threading
from typing import Optional

HANDLED = (signal.SIGINT, signal.SIGTERM)
# A signal held during a garbage collection is sent again this long after it: the gc callbacks
# have returned by then (they take microseconds), and a person does not notice the wait.
RESEND_DELAY_S = 0.05


class Interrupted(KeyboardInterrupt):
  """Raised in the main thread by SIGINT or SIGTERM."""

  def __init__(self, signum: int):
    super().__init__(signal.Signals(signum).name)
    self.signum = int(signum)

  @property
  def exit_code(self) -> int:
    return 128 + self.signum


class _State:
  received: Optional[int] = None  # the first signal received, None while none
  raised = False  # whether an Interrupted has been raised out of the handler's frame
  in_gc = False
  active = False  # inside handled()


_state = _State()


def _handler(signum, frame):
  del frame
  if _state.received is None:
    _state.received = signum
  if _state.in_gc:
    return  # raised in a gc callback it would be swallowed; _gc_stop sends it again
  _state.raised = True
  raise Interrupted(signum)


def _gc_start(phase, info):
  del info
  if phase == "start":
    _state.in_gc = True


def _gc_stop(phase, info):
  del info
  if phase != "stop":
    return
  try:
    if _state.received is not None and not _state.raised:
      # Sent again a moment later from a timer thread: sent from here, the handler would run (and
      # its exception be swallowed) before this callback returns. If lost anyway, `check()` raises it.
      timer = threading.Timer(RESEND_DELAY_S, signal.pthread_kill,
                              args=(threading.main_thread().ident, _state.received))
      timer.daemon = True
      timer.start()  # waits for the thread: a handler may run here, still inside the gc callback
  finally:
    _state.in_gc = False  # last: the collection's callbacks, this one included, are over


def received() -> Optional[int]:
  """The signal received since `handled()` began, or None."""
  return _state.received


def check() -> None:
  """Raises Interrupted when a signal was received within handled(); call at safe points (between
  frames, between training steps)."""
  if _state.active and _state.received is not None:
    _state.raised = True
    raise Interrupted(_state.received)


@contextlib.contextmanager
def handled():
  """SIGINT and SIGTERM raise Interrupted within; the previous handlers come back after.

  Only the main thread can install signal handlers; elsewhere this does nothing.
  """
  if threading.current_thread() is not threading.main_thread():
    yield
    return
  previous = {s: signal.signal(s, _handler) for s in HANDLED}
  _state.received, _state.raised, _state.in_gc, _state.active = None, False, False, True
  gc.callbacks.insert(0, _gc_start)  # callbacks run in list order: first at the start ...
  gc.callbacks.append(_gc_stop)  # ... and last at the end of a collection
  try:
    yield
  finally:
    _state.active = False
    gc.callbacks.remove(_gc_start)
    gc.callbacks.remove(_gc_stop)
    for s, h in previous.items():
      signal.signal(s, h)


def hard_exit(code: int) -> None:
  """Flushes stdout and stderr and ends the process at once (no interpreter finalisation)."""
  for stream in (sys.stdout, sys.stderr):
    try:
      stream.flush()
    except (OSError, ValueError):
      pass
  os._exit(code)  # pylint: disable=protected-access
