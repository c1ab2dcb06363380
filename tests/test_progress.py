"""Compile notices: a compilation that runs longer than the threshold is announced and its
duration reported; a quick one prints nothing; the listeners are removed afterwards."""

import io

import jax
import jax.numpy as jnp

from diffdesign._progress import CompileNotices


def _slow_to_compile(x):
    for i in range(300):  # ~1 s of XLA compilation on 2 cores, a few microseconds to run
        x = jnp.sin(x) * jnp.cos(x + i) + jnp.tanh(x * i)
    return x


def test_a_long_compilation_is_announced_and_timed():
    out, x = io.StringIO(), jnp.ones(3)  # the input made outside: its own small compilation
    with CompileNotices(after_s=0.05, out=out):  # could pass 0.05 s on a loaded machine
        jax.jit(_slow_to_compile)(x).block_until_ready()
    lines = out.getvalue().splitlines()
    assert lines[0].startswith("compiling jit(_slow_to_compile) ... (first call with these")
    assert lines[1].startswith("compiled jit(_slow_to_compile) in ")
    assert len(lines) == 2


def test_quick_compilations_and_calls_outside_are_silent():
    out = io.StringIO()
    with CompileNotices(after_s=30.0, out=out):
        jax.jit(lambda x: x + 1.0)(1.0)
    jax.jit(_slow_to_compile)(jnp.ones(4)).block_until_ready()  # listeners removed
    assert out.getvalue() == ""


def test_json_progress_lines(capsys):
    import json

    from diffdesign._progress import bar, say, use_json

    use_json(True)
    try:
        say("stage one", "study")
        with bar(total=3, initial=1, desc="design", unit="step") as b:
            b.set_postfix_str("loss 0.5")
            b.update(2)
        x = jnp.ones(5)
        with CompileNotices(after_s=0.05):
            jax.jit(_slow_to_compile)(x).block_until_ready()
    finally:
        use_json(False)
    events = [json.loads(line) for line in capsys.readouterr().err.splitlines()]
    assert events[0]["event"] == "message" and events[0]["who"] == "study"
    assert events[0]["message"] == "stage one"
    progress = [e for e in events if e["event"] == "progress"]
    assert progress[-1]["done"] == 3 and progress[-1]["total"] == 3
    assert progress[-1]["postfix"] == "loss 0.5" and progress[-1]["eta_s"] == 0.0
    # only this function's events: on a loaded machine another small program compiled in the
    # same window (a constant, a transfer) can also pass the 0.05 s threshold
    compiles = [e for e in events if e["event"] == "compile" and "_slow_to_compile" in e["name"]]
    assert [e["state"] for e in compiles] == ["started", "finished"]
    assert compiles[1]["seconds"] > 0.05
