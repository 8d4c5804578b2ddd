"""A Ctrl-C in the middle of a held block waits for the block's end (tried in a child
process: a real SIGINT, delivered as Python delivers it, to the main thread)."""

from __future__ import annotations

import subprocess
import sys
import textwrap

SCRIPT = textwrap.dedent(
    """
    import os, signal, sys
    from bot import interrupts

    done = []
    try:
        with interrupts.held():
            os.kill(os.getpid(), signal.SIGINT)
            done.append("after the signal")  # still runs: the block is not cut
        done.append("after the block")  # never runs: the interrupt is raised first
    except KeyboardInterrupt:
        print("interrupted", done, signal.getsignal(signal.SIGINT) is signal.default_int_handler)
    """
)


def test_a_sigint_inside_a_held_block_is_raised_when_the_block_ends():
    out = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "interrupted ['after the signal'] True"


def test_no_sigint_means_no_interrupt_and_off_the_main_thread_nothing_is_held():
    script = textwrap.dedent(
        """
        import threading
        from bot import interrupts

        with interrupts.held():
            pass
        seen = []
        def run():
            with interrupts.held():  # signal.signal would raise off the main thread
                seen.append("ran")
        t = threading.Thread(target=run); t.start(); t.join()
        print(seen)
        """
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "['ran']"
