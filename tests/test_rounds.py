"""The run's queue of rounds (`runner.RoundQueue`), without Ray's scheduler: a sweep's next round is queued as
soon as its own round has ended, whatever the other sweeps are doing, and trials lost stop all planning."""

from pathlib import Path

from sweeper import runner
from sweeper.records import trial_key
from sweeper.spec import GridPoint

POINT = GridPoint(knobs={"variant": 1}, label="variant=1", is_baseline=False)


def batch(sweep_id: str, seeds: range) -> runner.Batch:
    return runner.Batch(sweep_id, None, [(POINT, seed) for seed in seeds], Path("."), None)  # type: ignore[arg-type]


def test_a_sweep_whose_round_ends_queues_its_next_round_while_another_still_runs():
    asked = []

    def next_round(sweep_id, ran):
        asked.append((sweep_id, [seed for _, seed in ran]))
        return [(POINT, 3), (POINT, 4)] if sweep_id == "short" and len(asked) == 1 else []

    rounds = runner.RoundQueue([batch("short", range(2)), batch("long", range(2))], next_round, display=None)
    queued = [(t["sweep"], t["seed"]) for t in rounds.queue]
    assert queued == [("short", 0), ("short", 1), ("long", 0), ("long", 1)]
    rounds.queue.clear()  # all four handed to Tune
    rounds.trial_done("short", trial_key(POINT.label, 0))
    assert asked == [] and rounds.waiting()  # the short round still has a trial running
    rounds.trial_done("short", trial_key(POINT.label, 1))
    assert asked == [("short", [0, 1])]
    assert [(t["sweep"], t["seed"]) for t in rounds.queue] == [("short", 3), ("short", 4)]  # long still running
    rounds.trial_done("long", trial_key(POINT.label, 0))
    rounds.trial_done("long", trial_key(POINT.label, 1))
    assert asked[-1] == ("long", [0, 1])  # the long sweep is done: []
    rounds.queue.clear()
    for seed in (3, 4):
        rounds.trial_done("short", trial_key(POINT.label, seed))
    assert asked[-1] == ("short", [3, 4]) and not rounds.queue and not rounds.waiting()


def test_a_round_that_lost_trials_stops_every_sweep_planning():
    rounds = runner.RoundQueue([batch("a", range(1)), batch("b", range(2))], lambda sweep_id, ran: None, display=None)
    rounds.queue.clear()
    rounds.trial_done("a", trial_key(POINT.label, 0))
    assert rounds.stopped and not rounds.waiting()
    rounds.trial_done("b", trial_key(POINT.label, 0))
    rounds.trial_done("b", trial_key(POINT.label, 1))
    assert not rounds.queue


def test_a_fixed_list_is_never_waited_on():
    rounds = runner.RoundQueue([batch("a", range(2))], None, display=None)
    assert not rounds.waiting() and len(rounds.queue) == 2
