"""``edgernn verify --plot``: the source model, the converted one and its int8 form, drawn together.

A picture to look at before trusting a conversion on a device: the first sequence of the
verification data through all three, so a difference that a max-abs-error number hides (a shifted
forecast, a late class switch) shows. matplotlib is an optional extra (``edgernn[plot]``).
"""

from __future__ import annotations

import numpy as np

from .errors import EdgernnError, InvalidInput


def _first(outputs):
    return np.asarray(outputs[0] if isinstance(outputs, list) else outputs)[0]


def plot_comparison(path, source, model, data=None, seed: int = 0, **options) -> dict:
    """Write a PNG to ``path``: output 0 of sequence 0 from the source framework, from edgernn, and
    from edgernn's int8 model (calibrated on the same data). Returns what was drawn, by name."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise InvalidInput("--plot needs matplotlib: pip install 'edgernn[plot]'") from None
    from .importers import importer_module
    from .verify import _inputs

    inputs, description = _inputs(model.spec, data, seed)
    curves = {"converted (float32)": _first(model.predict(*inputs))}
    try:
        curves = {"source": _first(importer_module(source).run_source(source, inputs, **options)), **curves}
    except ImportError:
        pass  # the framework is not installed: converted and int8 only
    notes = []
    try:
        curves["int8"] = _first(model.quantize(inputs[0], scheme="int8").predict(inputs[0]))
    except EdgernnError as exc:  # not quantizable (several inputs, an unsupported layer, ...)
        notes.append(f"no int8 curve: {exc}")

    figure, axis = plt.subplots(figsize=(9, 4.5))
    styles = {"source": dict(color="black", linewidth=3, alpha=0.35), "converted (float32)": dict(color="tab:blue"),
              "int8": dict(color="tab:orange", linestyle="--")}
    for name, values in curves.items():
        if values.ndim == 2:  # a sequence: (T, outputs); draw up to three outputs
            for k in range(min(values.shape[1], 3)):
                axis.plot(values[:, k], label=f"{name}, output {k}", **styles[name])
            axis.set_xlabel("timestep")
        else:  # one vector per sequence
            axis.plot(np.arange(values.shape[0]), values, marker="o", label=name, **styles[name])
            axis.set_xlabel("output")
    axis.set_title(f"{getattr(source, 'name', source)}: sequence 0 of {description}"[:110], fontsize=9)
    axis.legend(fontsize=8)
    if notes:
        figure.text(0.01, 0.01, "; ".join(notes)[:150], fontsize=7)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return {"drawn": list(curves), "notes": notes}
