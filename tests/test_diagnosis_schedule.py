"""benchmark/diagnosis/schedule.py replays the job scheduler: makespans worked out by hand."""

from __future__ import annotations

from collections import namedtuple

import pytest
from script_module import load_script

Task = namedtuple("Task", "key label after")


def test_replay_runs_ready_jobs_in_priority_order_as_many_at_a_time_as_given():
    script = load_script("benchmark/diagnosis/schedule.py")
    a, b, c = Task("a", "A", ()), Task("b", "B", ()), Task("c", "C", ("a",))
    seconds = {"A": 10.0, "B": 3.0, "C": 5.0}
    # two at a time: A and B from 0, C waits for A (10) and ends at 15
    assert script.replay([a, b, c], seconds, 2) == 15.0
    # one at a time: the sum, whatever the order
    assert script.replay([b, a, c], seconds, 1) == 18.0
    # the priority decides the makespan: A heads the longest chain (A, C); started third it ends the run at 18
    d = Task("d", "D", ())
    seconds["D"] = 9.0
    assert script.replay([d, b, a, c], seconds, 2) == 3.0 + 10.0 + 5.0  # D 0-9, B 0-3, A 3-13, C 13-18
    assert script.replay([a, d, b, c], seconds, 2) == 15.0  # started first: A 0-10, D 0-9, B 9-12, C 10-15
    with pytest.raises(ValueError, match="wait on each other"):
        script.replay([Task("x", "A", ("y",)), Task("y", "B", ("x",))], seconds, 2)
