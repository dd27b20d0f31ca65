"""One self-contained HTML report: the metrics table against the baselines, and the figures."""

from __future__ import annotations

import base64
import html
import math
import tempfile
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from wxembed.errors import WxembedError
from wxembed.evaluation.evaluate import evaluate
from wxembed.evaluation.metrics import score_kind, score_label
from wxembed.figures.plot import save_comparison_png, save_loss_png
from wxembed.grid import Grid
from wxembed.times import format_time

ROWS = (
    *("mse", "mae", "csi_20", "csi_35", "csi_45", "bias_20", "pod_35", "far_35"),
    *("fss_35_3km", "fss_35_9km", "fss_35_27km", "fss_35_81km", "ssim"),
    *("recall_at_10", "analog_fss"),
)
"""The scores the report's tables show, in order (labels and which way is better come from
:data:`wxembed.evaluation.metrics.SCORE_KINDS`)."""

EXAMPLE_FIGURES = (
    ("autoencoder", "autoencoder", "autoencoder reconstruction"),
    ("pca", "PCA", "PCA reconstruction with as many numbers"),
    (
        "autoencoder_matched",
        "autoencoder, matched",
        "the autoencoder's reconstruction probability-matched to the hour's echo coverage",
    ),
)
"""The figures of each example hour: the method's key in the example, its title, the caption."""

STYLE = """
body { font-family: system-ui, sans-serif; max-width: 1200px; margin: 2em auto; color: #222; }
table { border-collapse: collapse; margin: 1em 0; }
td, th { padding: 4px 12px; border-bottom: 1px solid #ddd; }
th { text-align: left; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
td.best { font-weight: bold; background: #eef7ee; } figure { margin: 1.5em 0; }
img { max-width: 100%; border: 1px solid #eee; } figcaption { color: #555; font-size: 0.9em; }
.note { color: #555; font-size: 0.9em; }
"""


def _fmt(v) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "—"
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def metrics_table(scores: dict[str, dict]) -> str:
    """An HTML table: one row per metric, one column per model; the best in each row in bold."""
    names = list(scores)
    head = "".join(f"<th>{html.escape(n)}</th>" for n in names)
    rows = []
    for key in ROWS:
        values = [scores[n].get(key) for n in names]
        if all(v is None for v in values):
            continue
        finite = [v for v in values if isinstance(v, int | float) and not math.isnan(v)]
        kind = score_kind(key)
        goodness = {"lower": lambda v: -v, "higher": lambda v: v, "one": lambda v: -abs(v - 1)}
        best = max(finite, key=goodness[kind.better]) if finite and kind else None
        label = score_label(key)
        cells = "".join(
            f'<td class="num{" best" if v == best and best is not None else ""}">{_fmt(v)}</td>'
            for v in values
        )
        rows.append(f"<tr><th>{label}</th>{cells}</tr>")
    return f"<table><tr><th>metric</th>{head}</tr>{''.join(rows)}</table>"


def _figure(caption: str, png: str | Path) -> str:
    data = base64.b64encode(Path(png).read_bytes()).decode("ascii")
    return (
        f'<figure><img src="data:image/png;base64,{data}" alt="{html.escape(caption)}">'
        f"<figcaption>{html.escape(caption)}</figcaption></figure>"
    )


def _better_worse(beats: dict) -> str:
    """ "is better on ...; worse on ..." from a score -> won (True/False/None) dict."""
    shown = [k for k in ROWS if k in beats]
    wins = ", ".join(score_label(k) for k in shown if beats[k] is True) or "no score"
    losses = ", ".join(score_label(k) for k in shown if beats[k] is False) or "no score"
    return f"is better on {html.escape(wins)}; worse on {html.escape(losses)}"


def verdict(evaluation: dict) -> str:
    """One plain paragraph: the scores on which the autoencoder beats PCA of its size, those on
    which it loses (and the same for both probability-matched), and a warning when PCA had too
    few training hours to be a fair rival."""
    text = (
        f"<p><b>Against PCA with {evaluation['pca_components']} components:</b> the autoencoder "
        f"{_better_worse(evaluation.get('autoencoder_beats_pca', {}))}.</p>"
    )
    matched = evaluation.get("matched_autoencoder_beats_matched_pca")
    if matched:
        text += (
            "<p><b>Probability-matched</b> (each reconstruction remapped to the hour's echo "
            "coverage, which the embedding records; PCA given the same coverage): the "
            f"autoencoder {_better_worse(matched)}. Matching trades squared error for the right "
            "echo area and skill at thresholds.</p>"
        )
    if evaluation.get("train_hours_per_code_number", 99) < 10:
        text += (
            f"<p class='note'>Only {evaluation['train_hours']} training hours for "
            f"{evaluation['embedding_dim']} numbers: PCA of that size nearly memorises them, so "
            "this comparison says little; judge on a larger archive.</p>"
        )
    return text


def _compression_text(c: dict) -> str:
    return (
        f"{c['pixels']:,} pixels to {c['embedding_dim']} numbers ({c['compression_ratio']:,}x "
        f"fewer values, {c['bytes_ratio']:,}x fewer bytes than the uint8 archive)"
    )


def write_report(
    path: str | Path,
    *,
    title: str,
    evaluation: dict,
    figures: Sequence[tuple[str, str | Path]] = (),
    facts: dict | None = None,
) -> Path:
    """Write the report: facts about the run, the metrics tables (overall, by regime, by season)
    and every figure, embedded, so the one file can be mailed or archived."""
    path = Path(path)
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        f"<title>{html.escape(title)}</title><style>{STYLE}</style></head>",
        f"<body><h1>{html.escape(title)}</h1>",
        f"<p class='note'>Made {datetime.now(UTC):%Y-%m-%d %H:%M} UTC by wxembed.</p>",
    ]
    facts = {
        "model": f"{evaluation['arch']} ({evaluation['embedding_dim']} numbers per image)",
        "archive": evaluation["archive"],
        "held-out hours": f"{evaluation['held_out_hours']} ({evaluation['held_out_first']} to "
        f"{evaluation['held_out_last']}), after {evaluation['train_hours']} training hours",
        "baselines": f"PCA/EOF with {evaluation['pca_components']} components fit on the "
        "training hours; "
        "the mean training image (climatology)",
        "compression": _compression_text(evaluation["compression"]),
        **(facts or {}),
    }
    rows = (
        f"<tr><th>{html.escape(k)}</th><td>{html.escape(str(v))}</td></tr>"
        for k, v in facts.items()
    )
    parts.append("<table>" + "".join(rows) + "</table>")
    parts.append("<h2>Scores on the held-out hours</h2>")
    parts.append(
        "<p class='note'>Fields are floored at 0 dBZ before scoring; — marks a score that is "
        "undefined (no events in truth or forecast). Bold: the best in its row.</p>"
    )
    parts.append(verdict(evaluation))
    parts.append(metrics_table(evaluation["scores"]))
    for group in ("by_regime", "by_season"):
        for name, scores in evaluation.get(group, {}).items():
            parts.append(f"<h3>{html.escape(group.replace('by_', ''))}: {html.escape(name)}</h3>")
            parts.append(metrics_table(scores))
    if figures:
        parts.append("<h2>Figures</h2>")
        parts += [_figure(caption, png) for caption, png in figures]
    parts.append("</body></html>")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(parts), encoding="utf-8")
    return path


def check_writable(path: str | Path) -> Path:
    """Fail now, not after an hour of computing, if ``path`` cannot be written. Creates the
    folder, but not the file: an existing file is opened for writing and left as it is, and a
    new one is tried as a temporary file beside it, removed at once."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.exists():
            with open(path, "r+b"):  # its content untouched
                pass
        else:
            with tempfile.NamedTemporaryFile(dir=path.parent, prefix=f".{path.name}."):
                pass
    except OSError as exc:
        raise WxembedError(f"{path}: cannot write the output here ({exc.strerror})") from None
    return path


def build_report(
    checkpoint: str | Path,
    archive: str | Path,
    out: str | Path,
    *,
    evaluation: dict | None = None,
    extra_figures: Sequence[tuple[str, str | Path]] = (),
    facts: dict | None = None,
    examples: int = 2,
) -> tuple[Path, dict]:
    """Evaluate (unless ``evaluation`` is given with examples), draw the reconstruction and loss
    figures, and write the HTML report. Returns the report's path and the evaluation."""
    out = check_writable(out)
    if evaluation is None or "examples" not in evaluation:
        evaluation = evaluate(checkpoint, archive, keep=examples)
    grid = Grid.from_json(evaluation["grid"])
    with tempfile.TemporaryDirectory(prefix="wxembed-report-") as tmp:
        figures = []
        for i, ex in enumerate(evaluation.get("examples", [])):
            t = format_time(ex["time"])
            for method, name, what in EXAMPLE_FIGURES:
                if method not in ex:  # no matched one from a model without coverage numbers
                    continue
                png = save_comparison_png(
                    Path(tmp) / f"{method}{i}.png",
                    ex["truth"],
                    ex[method],
                    grid,
                    titles=(f"original {t}", name, f"{name} - original"),
                )
                figures.append((f"Held-out hour {t}: original, {what}, difference", png))
        model_dir = Path(evaluation["checkpoint"]).resolve().parent.parent
        log_csv = model_dir / "logs" / "version_0" / "metrics.csv"
        if log_csv.exists():
            figures.append(
                ("Training and validation loss", save_loss_png(Path(tmp) / "loss.png", log_csv))
            )
        figures += list(extra_figures)
        clean = {k: v for k, v in evaluation.items() if k != "examples"}
        path = write_report(
            out, title="wxembed report", evaluation=clean, figures=figures, facts=facts
        )
    return path, clean
