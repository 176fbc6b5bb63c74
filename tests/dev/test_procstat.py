"""/proc/<pid>/stat fields, read past a command name with spaces and parentheses."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from pipeline.dev.procstat import cpu_seconds, processes, stat_fields


def test_fields_survive_a_command_name_with_spaces_and_parentheses() -> None:
    rename = "open('/proc/self/comm', 'w').write('a) (b c'); print(flush=True); input()"
    with subprocess.Popen(
        [sys.executable, "-c", rename], stdin=subprocess.PIPE, stdout=subprocess.PIPE
    ) as child:
        assert child.stdout is not None
        child.stdout.readline()  # renamed
        try:
            assert Path(f"/proc/{child.pid}/comm").read_text().strip() == "a) (b c"
            assert stat_fields(child.pid)[1] == str(os.getpid())  # its parent, past the name
            assert dict(processes())[child.pid][1] == str(os.getpid())
        finally:
            child.kill()


def test_cpu_seconds_grow_while_a_process_works() -> None:
    before = cpu_seconds(os.getpid())
    sum(i * i for i in range(3_000_000))
    assert cpu_seconds(os.getpid()) > before
