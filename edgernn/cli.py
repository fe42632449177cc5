"""The ``edgernn`` command: a thin click layer over the library.

Every command turns an :class:`~edgernn.errors.EdgernnError` into one line on stderr and exit
status 1 -- no traceback for a problem the user can fix.
"""

from __future__ import annotations

import functools
import json
import sys
from pathlib import Path

import click
import numpy as np

from .errors import EdgernnError, InvalidInput

# Lazy imports: each command imports what it uses inside its function, so `edgernn --help` and a
# command that needs no framework, no runtime or no Numba (info, run on the ahead-of-time step) do not pay for them.


def _friendly(command):
    """Report EdgernnError as ``error: <message>`` and exit 1."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except EdgernnError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(1)

    return wrapper


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


@click.group()
@click.version_option(package_name="edgernn")
def main():
    """Run recurrent networks trained in Keras on small CPUs, stateful, without TensorFlow."""


@main.command()
@click.argument("source", type=click.Path(dir_okay=False))
@click.option("-o", "--output", type=click.Path(dir_okay=False), help="The .ernn file to write (default: SOURCE with .ernn).")
@click.option("--option", "options", multiple=True, metavar="KEY=VALUE", help="An importer option (repeatable).")
@click.option("--no-verify", is_flag=True, help="Do not run the source model to check the conversion.")
@_friendly
def convert(source, output, options, no_verify):
    """Convert a trained model (.keras, .h5, .pt, .onnx, .tflite) into an .ernn file.

    Unless --no-verify, the source model is run by its framework (when installed) against the
    converted one; a conversion that does not reproduce it is an error (see `edgernn verify`).
    """
    from . import convert as convert_model
    from .summary import describe
    from .verify import summary_line

    model = convert_model(source, verify=not no_verify, **_parse_options(options))
    if "verification" in model.spec.source:
        click.echo(summary_line(model.spec.source["verification"]))
    output = Path(output) if output else Path(source).with_suffix(".ernn")
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
@_friendly
def verify(source, data_path, tolerance, rtol, seed, options, plot_path):
    """Convert SOURCE and check the result against SOURCE run by its own framework.

    Prints the errors of each check and PASS or FAIL; exit status 1 on FAIL (or when the
    framework cannot run the source), 0 on PASS and when the framework is not installed.
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

        drawn = plot_comparison(plot_path, source, model, data=data, seed=seed, **opts)
        click.echo(f"wrote {plot_path}: {', '.join(drawn['drawn'])}" + "".join(f" ({n})" for n in drawn["notes"]))
    if result.get("passed") is False or result.get("error"):
        sys.exit(1)


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

        qm = m.quantize(load_calibration(calibration, m.input_features), scheme=quant)
        description["quantization"] = {"scheme": quant, "layers": qm.report}
    if as_json:
        click.echo(json.dumps(description, indent=2))
        return
    click.echo(format_description(description))
    if calibration:
        from .quantize import format_report

        click.echo(f"{quant}: error against the float model on the calibration data:\n"
                   + format_report(description["quantization"]["layers"]))


def _csv_rows(stream, width: int):
    """Yield float32 rows of ``width`` values from CSV text.

    Blank lines and ``#`` comments are skipped; non-numeric lines before the first row of numbers
    are a header and skipped too; after it, a non-numeric line is an error naming its number.
    """
    seen_data = False
    for number, line in enumerate(stream, start=1):
        text = line.strip()
        if not text or text.startswith("#"):
            continue
        fields = text.replace(";", ",").split(",")
        try:
            row = np.array([float(f) for f in fields], dtype=np.float32)
        except ValueError:
            if not seen_data:
                continue  # a header line
            raise InvalidInput(f"line {number}: not a row of numbers: {text[:60]!r}") from None
        if row.size != width:
            raise InvalidInput(f"line {number}: {row.size} values, the model takes {width} per row")
        seen_data = True
        yield row


def _npy_rows(path: Path, width: int):
    try:
        array = np.load(path, allow_pickle=False)
    except (ValueError, OSError) as exc:
        raise InvalidInput(f"{path}: not a readable .npy array ({exc})") from None
    array = np.asarray(array, dtype=np.float32).reshape(len(array), -1) if array.ndim else array
    if array.ndim != 2 or array.shape[1] != width:
        raise InvalidInput(f"{path}: shape {array.shape}, expected (rows, {width})")
    yield from array


@main.command()
@click.argument("model", type=click.Path(dir_okay=False))
@click.option("-i", "--input", "input_path", type=click.Path(dir_okay=False),
              help="CSV or .npy file of rows (default: CSV on stdin).")
@click.option("-o", "--output", "output_path", type=click.Path(dir_okay=False), help="CSV file (default: stdout).")
@click.option("--streams", default=1, show_default=True,
              help="Independent streams: each row holds one timestep of every stream, side by side.")
@click.option("--state", "state_path", type=click.Path(dir_okay=False),
              help="Resume from this state file if it exists, and keep it saved (atomically) as rows pass.")
@click.option("--state-every", default=100, show_default=True,
              help="With --state: save after every N rows (and at the end).")
@_friendly
def run(model, input_path, output_path, streams, state_path, state_every):
    """Stream rows through a stateful model: one timestep per input row, one output row per input row.

    Each output row is written and flushed as soon as its input row arrives, so this works at the
    end of a shell pipeline fed by a sensor.
    """
    from . import load

    m = load(model)
    s = m.stream(batch_size=streams)
    if state_path and Path(state_path).exists():
        s.load_state(state_path)
    width = streams * m.input_features
    if input_path and input_path.endswith(".npy"):
        rows = _npy_rows(Path(input_path), width)
        source = None
    else:
        source = open(input_path) if input_path else sys.stdin
        rows = _csv_rows(source, width)
    sink = open(output_path, "w") if output_path else sys.stdout
    x = np.empty((streams, m.input_features), np.float32)
    y = np.empty((streams, m.output_features), np.float32)
    try:
        for count, row in enumerate(rows, start=1):
            x.reshape(-1)[:] = row
            s.step(x, out=y)
            sink.write(",".join(f"{v:.9g}" for v in y.reshape(-1)) + "\n")
            sink.flush()
            if state_path and count % max(state_every, 1) == 0:
                s.save_state(state_path)
    except BrokenPipeError:
        pass  # the reader went away (e.g. `| head`): stop quietly
    finally:
        if state_path:
            s.save_state(state_path)
        if source not in (None, sys.stdin):
            source.close()
        if sink is not sys.stdout:
            sink.close()


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
              help="Representative inputs: .npy (sequences, T, features) or (T, features), or CSV rows. Needed for int8.")
@click.option("-o", "--output", required=True, type=click.Path(file_okay=False), help="The firmware folder to write.")
@click.option("--name", default="model", show_default=True, help="C name of the model (prefix of its symbols).")
@click.option("--testbench", is_flag=True, help="Also write the host testbench (make -C DIR testbench).")
@_friendly
def export_firmware(model, quant, calibration, output, name, testbench):
    """Quantize an .ernn model and write its C99 firmware: runtime, weights, Makefile, CMakeLists.txt."""
    from . import load
    from .export import export, load_calibration, mcu_sizes
    from .quantize import format_report

    m = load(model)
    data = load_calibration(calibration, m.input_features) if calibration else None
    qm = m.quantize(data, scheme=quant)
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


if __name__ == "__main__":  # pragma: no cover
    main()
