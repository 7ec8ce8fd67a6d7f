"""The trainers' process-group teardown: nothing to close without a group; the hard exit keeps the code and flushes."""

from __future__ import annotations

import subprocess
import sys

from tokenizers_visual.dist_utils import close_distributed


def test_close_without_a_group_is_a_no_op():
    assert close_distributed() is False


def test_exit_process_keeps_the_code_and_flushes_logs_and_streams():
    code = (
        "import logging, sys\n"
        "from tokenizers_visual.dist_utils import exit_process\n"
        "logging.basicConfig()\n"
        "logging.getLogger('run').warning('the last log line')\n"
        "print('unterminated stdout', end='')\n"
        "sys.stderr.write('unterminated stderr')\n"
        "exit_process(3, distributed=True)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 3
    assert proc.stdout == "unterminated stdout"  # block-buffered into a pipe: lost without the flush
    assert "the last log line" in proc.stderr and proc.stderr.endswith("unterminated stderr")
    plain = subprocess.run(
        [sys.executable, "-c", code.replace("distributed=True", "distributed=False")],
        capture_output=True,
        text=True,
    )
    assert plain.returncode == 3 and plain.stdout == "unterminated stdout"
