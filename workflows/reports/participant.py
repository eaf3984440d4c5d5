"""The participant report ``OUTPUT_DIR/sub-<label>.html``, figures in ``sub-<label>/figures/``."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from workflows.reports import figures as fig
from workflows.reports.boilerplate import methods_html
from workflows.reports.html import Section, figure, note, table, write_page
from workflows.reports.inputs import (
    input_companion,
    node_domains,
    node_groups,
    resolve_uri,
)
from workflows.bids.naming import build_derivative_path, run_name, scale_of, source_entities
from workflows.bids.provenance import read_sidecar

__all__ = ["failed_participant_report", "participant_report", "reports_failure"]

_QC_COLUMNS = ["n_volumes", "n_volumes_kept", "mean_fd", "max_fd", "tsnr_before", "tsnr_after",
               "strategy"]


class _RunFigures:
    """Builds the figures of one run under ``sub-<label>/figures/`` and their HTML."""

    def __init__(self, output_dir: Path, qc_file: str) -> None:
        self.output_dir = output_dir
        self.entities = source_entities(qc_file)
        self.name = run_name(qc_file)

    def save(self, figure_obj, desc: str, suffix: str, extension: str, caption: str,
             **entities) -> str:
        relative = build_derivative_path({**self.entities, **entities, "datatype": "figures",
                                          "desc": desc, "suffix": suffix,
                                          "extension": extension})
        path = fig.save_figure(figure_obj, self.output_dir / relative)
        return figure(path, self.output_dir, caption)


def _qc_section(run: _RunFigures, qc_file: str, fd_threshold: float | None) -> str:
    qc = pd.read_csv(qc_file, sep="\t", na_values="n/a")
    parts = [table(qc[[c for c in _QC_COLUMNS if c in qc.columns]])]
    meta = read_sidecar(qc_file)
    t_r = float(meta.get("t_r") or qc.get("t_r", pd.Series([1.0])).iloc[0])
    bold = next((resolve_uri(u, run.output_dir) for u in meta.get("Sources", [])), None)
    if bold is None or not bold.is_file():
        return "".join(parts) + note(f"The input BOLD of {run.name} was not found "
                                     "(Sources of its QC sidecar); no motion or tSNR figure.")
    confounds = input_companion(bold, "confounds", "timeseries", same_grid=False)
    if confounds is not None:
        threshold = fd_threshold if meta.get("strategy") == "scrubbing" else None
        motion = pd.read_csv(confounds, sep="\t", na_values="n/a")
        parts.append(run.save(fig.plot_motion(motion, t_r, threshold), "motion", "qc", ".svg",
                              "Framewise displacement and rigid-body motion "
                              f"(from {confounds.name})."))
    mask = input_companion(bold, "brain", "mask", same_grid=True)
    if mask is not None:
        from nilearn.masking import unmask

        from pipeline.denoise import tsnr_map
        from pipeline.image_checks import load_bold, load_mask, read_masked

        mask_img = load_mask(mask)
        series = read_masked(load_bold(bold, min_volumes=1), mask_img)  # float32, in the mask
        tsnr_img = unmask(tsnr_map(series), mask_img)
        parts.append(run.save(fig.plot_tsnr(tsnr_img), "tsnr", "map", ".png",
                              "Temporal SNR of the preprocessed BOLD (mean / SD over time)."))
    return "".join(parts)


def _carpet_section(run: _RunFigures, denoised: str | None, qc_file: str) -> str:
    if denoised is None:
        return note("The denoised BOLD was not saved (run with --save-denoised for a carpet plot).")
    meta = read_sidecar(qc_file)
    bold = next((resolve_uri(u, run.output_dir) for u in meta.get("Sources", [])), None)
    mask = input_companion(bold, "brain", "mask", same_grid=True) if bold else None
    return run.save(fig.plot_carpet(denoised, str(mask) if mask else None,
                                    float(meta.get("t_r", 1.0))),
                    "carpet", "bold", ".png", "Carpet plot of the denoised BOLD (voxels x time).")


def _network_section(run: _RunFigures, components: list[str]) -> str:
    import nibabel as nb

    parts = []
    for component_file in components:
        meta = read_sidecar(component_file)
        img = nb.load(component_file)
        titles = meta.get("NetworkLabels") or [f"N{i + 1}" for i in range(img.shape[3])]
        scale = scale_of(component_file)
        parts.append(run.save(
            fig.plot_network_grid(img, titles), "ica", "components", ".png",
            f"Scale {scale}: {img.shape[3]} networks ({meta.get('Method', 'back-reconstruction')}"
            f"), |z| > {fig.MAP_THRESHOLD}, on nilearn's MNI152 template.", scale=scale))
    return "".join(parts) or note("No network maps were found for this run.")


def _fnc_sections(run: _RunFigures, relmat_file: str | None, dfnc_file: str | None
                  ) -> tuple[str, str]:
    if relmat_file is None:
        return note("No static FNC for this run."), note("No dynamic FNC for this run.")
    relmat = pd.read_csv(relmat_file, sep="\t", index_col=0)
    groups = node_groups(list(relmat.index), node_domains(relmat_file))
    static = run.save(fig.plot_fnc(relmat, groups, run.name), "multiscale", "relmat", ".svg",
                      "Static FNC (Fisher z) within and across scales; lines separate "
                      "scales and domains.")
    if dfnc_file is None:
        return static, note("No dynamic FNC for this run.")
    windows = pd.read_csv(dfnc_file, sep="\t")
    t_r = float(read_sidecar(relmat_file).get("RepetitionTime", 1.0))
    dynamic = run.save(fig.plot_dfnc_windows(windows, t_r), "dfnc", "timeseries", ".png",
                       f"Sliding-window FNC: {windows.shape[1]} connections by "
                       f"{windows.shape[0]} windows.")
    return static, dynamic


def participant_report(output_dir: str | Path, label: str, *, layout=None,
                       fd_threshold: float | None = None) -> Path:
    """Write ``OUTPUT_DIR/sub-<label>.html`` from the participant's derivatives.

    Parameters
    ----------
    output_dir : path-like
        msica derivatives root.
    label : str
        Participant label (without ``sub-``).
    layout : bids.BIDSLayout, optional
        From :func:`workflows.bids.derivatives.derivatives_layout` (built when omitted).
    fd_threshold : float, optional
        Censoring threshold drawn on the FD trace of runs denoised with scrubbing.

    Returns
    -------
    Path
        ``OUTPUT_DIR/sub-<label>.html``, written atomically.

    Raises
    ------
    FileNotFoundError
        If the participant has no QC table: its participant level did not finish.
    """
    from workflows.bids.derivatives import collect_participant_outputs, derivatives_layout

    output_dir = Path(output_dir)
    layout = layout or derivatives_layout(output_dir)

    def files(**query) -> list[str]:
        return collect_participant_outputs(layout, participant_label=[label], required=False,
                                           **query)

    qc_files = files(desc="denoise", suffix="qc", extension=".tsv")
    if not qc_files:
        raise FileNotFoundError(f"sub-{label} has no QC table in {output_dir}; "
                                "its participant level did not finish.")
    parts: dict[str, list[str]] = {k: [] for k in ("qc", "carpet", "networks", "fnc", "dfnc")}
    for qc_file in qc_files:
        run = _RunFigures(output_dir, qc_file)
        heading = f"<h3>{run.name}</h3>" if len(qc_files) > 1 else ""

        def pick(desc: str, suffix: str, extension: str = ".tsv", name: str = run.name
                 ) -> list[str]:
            return [f for f in files(desc=desc, suffix=suffix, extension=extension)
                    if run_name(f) == name]

        components = sorted(pick("ica", "components", ".nii.gz"), key=scale_of)
        relmat = next(iter(pick("multiscale", "relmat")), None)
        dfnc = next(iter(pick("dfnc", "timeseries")), None)
        static, dynamic = _fnc_sections(run, relmat, dfnc)
        parts["qc"].append(heading + _qc_section(run, qc_file, fd_threshold))
        denoised = next(iter(pick("denoised", "bold", ".nii.gz")), None)
        parts["carpet"].append(heading + _carpet_section(run, denoised, qc_file))
        parts["networks"].append(heading + _network_section(run, components))
        parts["fnc"].append(heading + static)
        parts["dfnc"].append(heading + dynamic)
    sections = [
        Section("qc", "Quality control", "".join(parts["qc"])),
        Section("carpet", "Denoised BOLD", "".join(parts["carpet"])),
        Section("networks", "Networks", "".join(parts["networks"])),
        Section("fnc", "Static FNC", "".join(parts["fnc"])),
        Section("dfnc", "Dynamic FNC", "".join(parts["dfnc"])),
        Section("methods", "Methods", methods_html(output_dir, ("participant",))),
    ]
    return write_page(output_dir / f"sub-{label}.html", f"msica: sub-{label}",
                      f"{len(qc_files)} run(s); derivatives in sub-{label}/.", sections)


#: The subtitle of a failed participant's report (how :func:`reports_failure` tells it).
_FAILED_SUBTITLE = "No report: the participant level failed."


def reports_failure(report: str | Path) -> bool:
    """Whether ``report`` is the short page of :func:`failed_participant_report`."""
    return f"<p>{_FAILED_SUBTITLE}</p>" in Path(report).read_text(encoding="utf-8")


def failed_participant_report(output_dir: str | Path, label: str, error: BaseException) -> Path:
    """Write a short ``sub-<label>.html`` that says the participant's run failed, and why."""
    output_dir = Path(output_dir)
    crash_logs = sorted((output_dir / "logs").glob(f"crash-*-sub-{label}-*.txt"))
    links = ", ".join(f'<a href="logs/{p.name}">{p.name}</a>' for p in crash_logs)
    body = note(f"The participant level failed for sub-{label}: {error}", css="error") + note(
        "Rerun with -v for the traceback; its outputs, if any, are incomplete.") + (
        f"<p>Crash logs: {links}</p>" if links else "")
    return write_page(output_dir / f"sub-{label}.html", f"msica: sub-{label}", _FAILED_SUBTITLE,
                      [Section("errors", "Errors", body)])
