"""The ``edgernn`` command: a thin click layer over the library.

Every command turns an :class:`~edgernn.errors.EdgernnError` or an ``OSError`` into one line on
stderr and exit status 1 -- no traceback for a problem the user can fix (see ``_friendly``).
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import sys
import warnings
from pathlib import Path

import click
import numpy as np

from .errors import EdgernnError, InvalidInput

# Lazy imports: each command imports what it uses inside its function, so `edgernn --help` and a
# command that needs no framework, no runtime or no Numba (info, run on the ahead-of-time step) do not pay for them.


def _friendly(command):
    """The one way every command reports what goes wrong (docs/SECURITY.md, docs/cli.md):

    * an :class:`EdgernnError` -> ``error: <message>`` on stderr, exit status 1;
    * an ``OSError`` (a missing, unreadable or unwritable path, a folder where a file is expected,
      ...) -> ``error: <path>: <reason>``, exit status 1;
    * a Python warning (the library's, or a framework's) -> ``warning: <message>`` on stderr, once
      each, without the source line Python would show;
    * stdout closed by its reader (``| head``): exit status 0, nothing printed -- the reader took
      what it wanted, as with ``edgernn run``;
    * usage errors never get here: click reports them, exit status 2;
    * any other exception is a bug in edgernn: its traceback is shown, to be reported.
    """

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
            with _warnings_as_lines():
                return command(*args, **kwargs)
        except EdgernnError as exc:
            _fail(str(exc))
        except BrokenPipeError:  # the reader of stdout went away (`| head`): nobody to tell
            with contextlib.suppress(OSError, ValueError):  # no second error when Python flushes it at exit
                os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            sys.exit(0)
        except OSError as exc:
            reason = exc.strerror or str(exc)
            _fail(f"{exc.filename}: {reason}" if exc.filename is not None else reason)

    return wrapper


def _fail(message: str):
    click.echo(f"error: {message}", err=True)
    sys.exit(1)


@contextlib.contextmanager
def _warnings_as_lines():
    """Python warnings raised meanwhile, each printed once as ``warning: <message>`` on stderr."""
    shown = set()

    def show(message, category, filename, lineno, file=None, line=None):
        text = str(message)
        if text not in shown:
            shown.add(text)
            click.echo(f"warning: {text}", err=True)

    with warnings.catch_warnings():
        # edgernn's own warnings every time (the once-per-place registry would hide them from a
        # second command in one process), printed once each by ``show``.
        warnings.filterwarnings("always", module=r"edgernn(\.|$)")
        warnings.showwarning = show
        yield


@contextlib.contextmanager
def _writing(path):
    """Create the folders above ``path`` (a file or folder the command writes), and turn an OSError
    while writing it into one line that names ``path`` -- not a temporary file beside it."""
    path = Path(path)
    above = next((p for p in path.parents if p.exists()), None)
    if above is not None and not above.is_dir():
        raise InvalidInput(f"cannot write {path}: {above} is not a folder")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        yield
    except OSError as exc:
        reason = exc.strerror or str(exc)
        if isinstance(exc.filename, (str, os.PathLike)):
            failed, target = os.path.abspath(exc.filename), os.path.abspath(path)
            if failed != target and os.path.dirname(failed) != os.path.dirname(target):
                reason = f"{exc.filename}: {reason}"  # a file inside the folder written, or a source file
        raise InvalidInput(f"cannot write {path}: {reason}") from None


def _parse_options(pairs) -> dict:
    """``("nonlinearity=relu", "num_layers=2")`` -> ``{"nonlinearity": "relu", "num_layers": 2}``."""
    options = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise InvalidInput(f"--option takes KEY=VALUE, got {pair!r}")
        try:
            options[key] = json.loads(value)
        except ValueError:
            options[key] = value
    return options


def _log_to_stderr():
    """The library's log messages (such as the one before its kernels compile, edgernn.kernels._notice)
    as ``edgernn: <message>`` on the process's stderr, once per process however often ``main`` runs.

    The process's own stderr (``sys.__stderr__``), not the command's: a message that depends on
    the state of Numba's cache stays out of what click's test runner captures as the output."""
    import logging

    class StderrHandler(logging.Handler):
        def emit(self, record):
            if sys.__stderr__ is not None:
                click.echo(f"edgernn: {record.getMessage()}", file=sys.__stderr__)

    logger = logging.getLogger("edgernn")
    if not any(type(h).__name__ == "StderrHandler" for h in logger.handlers):
        logger.addHandler(StderrHandler(logging.WARNING))


@click.group()
@click.version_option(package_name="edgernn")
def main():
    """Run recurrent networks trained in Keras on small CPUs, stateful, without TensorFlow."""
    _log_to_stderr()


@main.command()
@click.argument("source", type=click.Path(dir_okay=False))
@click.option("-o", "--output", type=click.Path(dir_okay=False),
              help="The .ernn file to write (default: SOURCE with .ernn); missing folders above it are created.")
@click.option("--option", "options", multiple=True, metavar="KEY=VALUE",
              help="An importer option (repeatable); an unknown KEY is refused with the list of the format's keys.")
@click.option("--no-verify", is_flag=True, help="Do not run the source model to check the conversion.")
@_friendly
def convert(source, output, options, no_verify):
    """Convert a trained model (.keras, .h5, .pt, .onnx, .tflite) into an .ernn file.

    Unless --no-verify, the source model is run by its framework (when installed) against the
    converted one; a conversion that does not reproduce it is an error (see `edgernn verify`).
    Loading the framework takes a few seconds: a line on stderr says so first.

    \b
    Exit status:
      0  written (verification passed, or skipped: the framework is not installed,
         or it could not run the source: then a 'warning:' line on stderr says why)
      1  error: one line 'error: ...' on stderr (verification FAIL included)
      2  usage: a bad option or argument
    """
    from . import convert as convert_model
    from .summary import describe
    from .verify import summary_line

    model = convert_model(source, verify=not no_verify, **_parse_options(options))
    verification = model.spec.source.get("verification")
    if verification is not None and not verification.get("error"):  # an error was a warning already
        click.echo(summary_line(verification))
    output = Path(output) if output else Path(source).with_suffix(".ernn")
    with _writing(output):
        model.save(output)
    info = describe(model.spec)
    click.echo(f"wrote {output}: {len(info['layers'])} layers, {info['parameters']} parameters, "
               f"{info['state_bytes_per_stream']} state bytes per stream")


@main.command()
@click.argument("source", type=click.Path(dir_okay=False))
@click.option("--data", "data_path", type=click.Path(dir_okay=False),
              help=".npy array (batch, T, features) or (T, features) to compare on (default: a seeded random batch).")
@click.option("--tolerance", type=float, help="atol (default 1e-5; scaled by the output's size, see docs).")
@click.option("--rtol", type=float, help="rtol (default 1e-4, or 10 x --tolerance).")
@click.option("--seed", default=0, show_default=True, help="Seed of the random batch.")
@click.option("--option", "options", multiple=True, metavar="KEY=VALUE", help="An importer option (repeatable).")
@click.option("--plot", "plot_path", type=click.Path(dir_okay=False),
              help="Also draw source vs converted vs int8 on the first sequence into this PNG (needs matplotlib).")
@click.option("--allow-skip", is_flag=True,
              help="Exit 0, not 3, when nothing could be verified (the source's framework is not installed).")
@_friendly
def verify(source, data_path, tolerance, rtol, seed, options, plot_path, allow_skip):
    """Convert SOURCE and check the result against SOURCE run by its own framework.

    Prints the errors of each check and PASS or FAIL.

    \b
    Exit status:
      0  PASS (or nothing verified, with --allow-skip)
      1  FAIL, or the framework could not run the source, or an error
         (one line 'error: ...' on stderr)
      2  usage: a bad option or argument
      3  nothing verified: the source's framework is not installed
         (the line 'verification skipped: ...' says which; --allow-skip makes this 0)
    """
    from . import convert as convert_model
    from .verify import summary_line
    from .verify import verify as run_verification

    opts = _parse_options(options)
    data = None
    if data_path:
        try:
            data = np.load(data_path, allow_pickle=False)
        except (ValueError, OSError) as exc:
            raise InvalidInput(f"{data_path}: not a readable .npy array ({exc})") from None
    if tolerance is not None or rtol is not None:
        atol = 1e-5 if tolerance is None else tolerance
        tolerance = (atol, 10.0 * atol if rtol is None else rtol)
    model = convert_model(source, verify=False, **opts)
    result = run_verification(source, model, data=data, seed=seed, tolerance=tolerance, **opts)
    for check in result.get("checks", []):
        if "skipped" in check:
            click.echo(f"{check['check']}: skipped ({check['skipped']})")
        elif check.get("max_abs_error") is None:
            click.echo(f"{check['check']}: FAIL ({check.get('problem', 'no comparable output')})")
        else:
            click.echo(f"{check['check']}: max abs error {check['max_abs_error']:.3g}, "
                       f"max rel error {check['max_rel_error']:.3g} -> {'PASS' if check['passed'] else 'FAIL'}")
    click.echo(summary_line(result))
    if plot_path:
        from .plot import plot_comparison

        with _writing(plot_path):
            drawn = plot_comparison(plot_path, source, model, data=data, seed=seed, **opts)
        click.echo(f"wrote {plot_path}: {', '.join(drawn['drawn'])}" + "".join(f" ({n})" for n in drawn["notes"]))
    if result.get("passed") is False or result.get("error"):
        sys.exit(1)
    if result.get("passed") is None and not allow_skip:
        click.echo("error: nothing was verified (exit status 3; --allow-skip accepts that)", err=True)
        sys.exit(3)


@main.command()
@click.argument("model", type=click.Path(dir_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Print the description as JSON.")
@click.option("--calibration", type=click.Path(dir_okay=False),
              help="Also quantize on these inputs (as `export` does) and report each layer's error against the float model.")
@click.option("--quant", type=click.Choice(["int8", "int8-weights", "float32"]), default="int8", show_default=True,
              help="The scheme of the --calibration report.")
@_friendly
def info(model, as_json, calibration, quant):
    """Describe an .ernn model: layers, shapes, parameters, state size, origin; with --calibration,
    the per-layer error of its quantized form."""
    from . import load
    from .summary import describe, format_description

    m = load(model)
    description = describe(m.spec)
    if calibration:
        from .export import load_calibration

        qm = m.quantize(load_calibration(calibration, m.input_features, m.spec.inputs[0].dtype == "int"), scheme=quant)
        description["quantization"] = {"scheme": quant, "layers": qm.report}
    if as_json:
        click.echo(json.dumps(description, indent=2))
        return
    click.echo(format_description(description))
    if calibration:
        from .quantize import format_report

        click.echo(f"{quant}: error against the float model on the calibration data:\n"
                   + format_report(description["quantization"]["layers"]))


# `edgernn run`: the row format, its policies and the writers live in edgernn/rows.py. Imported here,
# beside the one command that uses it (its option choices are needed when the command is defined).
from . import rows as _rows  # noqa: E402


@main.command()
@click.argument("model", type=click.Path(dir_okay=False))
@click.option("-i", "--input", "input_path", type=click.Path(), metavar="FILE",
              help="Rows to read: FILE.npy is an array (rows, columns) or (rows, streams, features); "
                   "any other name is text in the format above (default, and '-': stdin).")
@click.option("-o", "--output", "output_path", type=click.Path(), metavar="FILE",
              help="Where output rows go: FILE.npy (any case) is a float32 array (rows, columns), written "
                   "atomically at the end; any other name is CSV text, written and flushed per row "
                   "(default, and '-': stdout).")
@click.option("--delimiter", type=click.Choice(_rows.DELIMITERS), default="auto", show_default=True,
              help="Text fields: auto (',' or ';' if the line has one, else spaces/tabs), or only ',', "
                   "only ';', only tab, or runs of spaces/tabs (space = whitespace).")
@click.option("--header/--no-header", default=None,
              help="The first line is a header, skipped whatever it holds / there is no header "
                   "(default: the first line is a header if it holds one non-number per column).")
@click.option("--on-bad-row", type=click.Choice(_rows.BAD_ROW_POLICIES), default="stop", show_default=True,
              help="A line that is not a row of numbers: stop (error naming the line), skip (no output "
                   "row), or reset (skip, and reset every stream to zero state).")
@click.option("--on-nan", type=click.Choice(_rows.NAN_POLICIES), default="stop", show_default=True,
              help="NaN or Inf in a stream's columns: stop (error naming the line); hold (that stream "
                   "is not stepped: state kept, last output repeated); reset (that stream is reset, not "
                   "stepped, zeros out); propagate (stepped as it is: NaN from then on).")
@click.option("--streams", type=click.IntRange(min=1), default=1, show_default=True,
              help="Independent streams: each row holds one timestep of every stream, side by side.")
@click.option("--state", "state_path", type=click.Path(), metavar="FILE",
              help="Resume from this state file if it exists, and keep it saved (atomically): every "
                   "--state-every rows, at the end, after an error and on a signal.")
@click.option("--state-every", type=click.IntRange(min=1), default=100, show_default=True,
              help="With --state: also save after every N rows.")
@_friendly
def run(model, input_path, output_path, delimiter, header, on_bad_row, on_nan, streams, state_path,
        state_every):
    """Stream rows through a stateful model: one timestep per input row, one output row per input row.

    Each output row is written and flushed as soon as its input row arrives, so this works at the
    end of a shell pipeline fed by a sensor.

    \b
    Input text, one row per line (UTF-8):
      - blank lines and lines starting with '#' are skipped;
      - fields: a line holding ',' or ';' is split at them, any other at runs
        of spaces/tabs (--delimiter forces one); spaces around fields are ignored;
      - a row is STREAMS x features numbers, the streams side by side; 'nan'
        and 'inf' are numbers, handled per --on-nan;
      - the first line is a header if it holds one non-number per column
        (or always with --header, never with --no-header);
      - any other line is a bad row, handled per --on-bad-row.

    \b
    Output: one row per row stepped (none for a skipped row): CSV, values
    '%.9g' separated by ',', or with -o FILE.npy one float32 array.

    \b
    Exit status:
      0        end of input, or the reader of stdout went away
      1        error: one line 'error: ...' on stderr
      2        usage: a bad option value
      128+N    stopped by signal N: 129 SIGHUP, 130 SIGINT, 143 SIGTERM; the row
               being stepped is finished, --state saved and -o FILE.npy written
    A line on stderr counts the rows skipped, held or reset, if any.
    """
    from . import load
    from .graph import several_inputs_problem

    m = load(model)
    problem = several_inputs_problem(m.spec, "edgernn run")
    if problem:
        raise InvalidInput(problem)
    s = m.stream(streams)
    stdin = getattr(sys.stdin, "buffer", sys.stdin)  # bytes: a garbled line is a bad row, not a crash
    rows, source = _rows.open_rows(input_path, stdin, streams * s.input_features, delimiter, header, streams)
    try:
        save = None
        if state_path:
            _rows.check_writable(state_path, "cannot write the state file")
            if Path(state_path).exists():
                s.load_state(state_path)

            def save():
                try:
                    s.save_state(state_path)
                except OSError as exc:
                    raise _rows.os_problem("cannot write the state file", state_path, exc) from None

        writer = _rows.open_writer(output_path, streams * m.output_features, sys.stdout)
        with _rows.Signals() as signals:
            try:
                tally = _rows.step_rows(s, rows, writer, on_bad_row=on_bad_row, on_nan=on_nan, save=save,
                                        save_every=state_every, signals=signals)
            finally:
                try:
                    if save is not None:
                        save()
                finally:
                    writer.close()
    finally:
        if source is not None:
            source.close()
    if tally.summary():
        click.echo(tally.summary(), err=True)
    if signals.received is not None:
        sys.exit(128 + signals.received)


@main.command()
@click.argument("model", type=click.Path(dir_okay=False))
@click.option("--ahead-of-time/--no-ahead-of-time", default=True, show_default=True,
              help="Also build the fused step as an extension module for this CPU, so later streams start "
                   "without importing Numba (needs a C compiler and Python's headers, here, once).")
@_friendly
def warmup(model, ahead_of_time):
    """Prepare this machine's kernel caches, so later processes start fast.

    Numba's on-disk cache gets every kernel the model uses; with --ahead-of-time (the default) the
    fused step is also built as an extension module. Where that cannot be built, warmup says why
    and succeeds: streams then load the step from Numba's cache, a few tenths of a second slower.
    """
    import time

    from . import load
    from .kernels import aot

    start = time.perf_counter()
    model = load(model)
    if ahead_of_time:
        try:
            path = aot.build_step()
            click.echo(f"ahead-of-time step: {path}")
        except aot.AotUnavailable as error:
            click.echo(f"ahead-of-time step not built: {error}", err=True)
    model.warmup()
    click.echo(f"kernels ready in {time.perf_counter() - start:.2f} s")


@main.command("export")
@click.argument("model", type=click.Path(dir_okay=False))
@click.option("--quant", type=click.Choice(["int8", "int8-weights", "float32"]), default="int8", show_default=True,
              help="int8: integer only; int8-weights: int8 weights, float32 activations; float32: no quantization.")
@click.option("--calibration", type=click.Path(dir_okay=False),
              help="Representative inputs: .npy (sequences, T, features) or (T, features), or CSV rows "
                   "(a model of integer codes: (sequences, T) or (sequences, T, 1) codes, any T). Needed for int8.")
@click.option("-o", "--output", required=True, type=click.Path(file_okay=False),
              help="The firmware folder to write (created, with missing folders above it).")
@click.option("--name", help="C name of the model (prefix of its symbols and files; the CMake target) "
                             "(default: MODEL's file name as a C identifier, e.g. basicmotions_lstm).")
@click.option("--testbench", is_flag=True, help="Also write the host testbench (make -C DIR testbench).")
@_friendly
def export_firmware(model, quant, calibration, output, name, testbench):
    """Quantize an .ernn model and write its C99 firmware: runtime, weights, Makefile, CMakeLists.txt.

    Files that an earlier export wrote into the folder and this one does not (testbench.c, the
    model files of another --name) are removed, as listed in the folder's .edgernn-export; no
    other file is touched.

    \b
    Exit status:
      0  written
      1  error: one line 'error: ...' on stderr
      2  usage: a bad option or argument
    """
    from . import load
    from .export import c_name, export, load_calibration, mcu_sizes
    from .quantize import format_report

    m = load(model)
    data = load_calibration(calibration, m.input_features, m.spec.inputs[0].dtype == "int") if calibration else None
    qm = m.quantize(data, scheme=quant)
    name = c_name(Path(model).stem) if name is None else name
    with _writing(output):
        sizes = export(qm, output, name=name, testbench=testbench)
    click.echo(f"wrote {output}: {name}_model.h/.c ({quant}), runtime sources, Makefile, CMakeLists.txt"
               + (", testbench.c" if testbench else ""))
    click.echo(f"weights {sizes['weight_bytes']} bytes, state {sizes['state_bytes']} bytes per stream, "
               f"scratch {sizes['scratch_bytes']} bytes")
    if qm.report:
        click.echo("error against the float model on the calibration data:\n" + format_report(qm.report))
    mcu = mcu_sizes(output, name, quant)
    if mcu:
        click.echo(f"cortex-m4 (arm-none-eabi-gcc -Os): flash {mcu['runtime_flash'] + mcu['model_flash']} bytes "
                   f"(runtime {mcu['runtime_flash']}, model {mcu['model_flash']}), static RAM {mcu['static_ram']} bytes")


@main.command()
@click.argument("model", type=click.Path(dir_okay=False))
@click.option("--tflite", "tflite_path", type=click.Path(dir_okay=False, exists=True),
              help="A .tflite file of the same model to time too (needs ai-edge-litert or tflite-runtime).")
@click.option("--onnx", "onnx_path", type=click.Path(dir_okay=False, exists=True),
              help="An .onnx file of the same model to time too (needs onnxruntime).")
@click.option("--quick", is_flag=True, help="Fewer, shorter measurements.")
@click.option("--steps", default=1000, show_default=True, help="Timesteps in the block measurement.")
@click.option("--streams", default=400, show_default=True, help="Streams in the many-streams measurement.")
@_friendly
def bench(model, tflite_path, onnx_path, quick, steps, streams):
    """Time MODEL (.ernn): one step, a block of steps, many streams -- against plain NumPy, and
    against a TFLite/ONNX file of the same model when given. Prints a markdown table.

    Outputs are checked to agree (1e-4) before timing. For single-thread numbers run it as
    OPENBLAS_NUM_THREADS=1 edgernn bench MODEL (ONNX Runtime and TFLite get one thread).
    """
    import os

    from . import load
    from .bench import bench_model, format_results, system_info, threads_pinned

    if steps < 1 or streams < 1:
        raise InvalidInput("--steps and --streams must be positive")
    m = load(model)
    if not threads_pinned(1):
        click.echo(f"note: OPENBLAS_NUM_THREADS={os.environ.get('OPENBLAS_NUM_THREADS', 'unset')}: the block path "
                   "may use several BLAS threads", err=True)
    results = bench_model(m, tflite=tflite_path, onnx=onnx_path, quick=quick, steps=steps, streams=streams,
                          log=lambda message: click.echo(message, err=True))
    click.echo(format_results(Path(model).name, results, system_info()))


@main.command()
@click.argument("model", type=click.Path(dir_okay=False))
@click.option("-i", "--input", "input_path", required=True, type=click.Path(exists=True), metavar="PATH",
              help="The recorded rows: a Parquet file or folder (hive-partitioned or not), or CSV.")
@click.option("--by", required=True, metavar="COLUMN", help="The device key column.")
@click.option("--time", "time_column", required=True, metavar="COLUMN", help="The time column (orders each device's rows).")
@click.option("-o", "--output", required=True, type=click.Path(file_okay=False), metavar="DIR",
              help="The output Parquet folder (key, time, one column per model output); run the same command "
                   "again to continue a replay that stopped.")
@click.option("--features", metavar="A,B,C",
              help="The input columns, in the model's order  [default: every numeric column but the key and time]")
@click.option("--scheduler", metavar="ADDRESS", help="A running Dask scheduler (tcp://host:8786)  [default: a LocalCluster]")
@click.option("--workers", type=click.IntRange(min=1), help="Worker processes of the LocalCluster  [default: one per core]")
@click.option("--quant", type=click.Choice(["int8", "int8-weights", "float32"]),
              help="Replay the firmware's arithmetic in this scheme (bit for bit with the exported C).")
@click.option("--calibration", type=click.Path(dir_okay=False, exists=True), metavar="FILE",
              help="Representative inputs (.npy or CSV) for --quant int8.")
@click.option("--initial-state", type=click.Path(file_okay=False, exists=True), metavar="DIR",
              help="Per-device state files (<key>.state); devices without one start from zero.")
@click.option("--task-rows", type=click.IntRange(min=1), default=1_000_000, show_default=True,
              help="Rows per task: short devices are packed up to it, longer ones cut into a chain of chunks.")
@click.option("--sort", is_flag=True, help="Sort each device's rows by time within a partition instead of refusing "
                                            "unsorted ones.")
@click.option("--progress/--no-progress", default=True, show_default=True, help="Dask's progress bar over the tasks.")
@_friendly
def replay(model, input_path, by, time_column, output, features, scheduler, workers, quant, calibration,
           initial_state, task_rows, sort, progress):
    """Run MODEL (.ernn) over every device's recorded rows on Dask, as each device would have.

    Each device's rows, in time order, are one stream from zero state (or its --initial-state file):
    the outputs equal one process's Stream.run over the device's whole series. See docs/fleet.md.
    """
    from .fleet import replay as run_replay

    if calibration and not quant:
        raise InvalidInput("--calibration is for --quant")
    if quant == "int8" and not calibration:
        raise InvalidInput("--quant int8 needs --calibration FILE (representative inputs)")
    if calibration:
        from . import load
        from .export import load_calibration

        loaded = load(model)
        calibration = load_calibration(calibration, loaded.input_features, loaded.spec.inputs[0].dtype == "int")
    result = run_replay(model, input_path, by=by, time=time_column, features=features, output=output,
                        scheduler=scheduler, workers=workers, quant=quant, calibration=calibration,
                        initial_state=initial_state, task_rows=task_rows, sort=sort, progress=progress,
                        echo=lambda line: click.echo(line, err=True))
    computed = result.get("rows_computed", 0)
    click.echo(f"{result['rows']} rows of {result['devices']} devices in {result['tasks']} tasks -> {output}: "
               f"{computed} rows computed in {result['seconds']:.1f} s, "
               f"{computed / max(result['seconds'], 1e-9):,.0f} rows/s"
               + (f" ({result['resumed']} tasks finished by an earlier run)" if result["resumed"] else ""))


if __name__ == "__main__":  # pragma: no cover
    main()
