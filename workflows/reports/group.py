"""The group report ``OUTPUT_DIR/group.html``, figures in ``OUTPUT_DIR/group/figures/``."""

from __future__ import annotations

import html
import json
from collections.abc import Mapping
from pathlib import Path

import pandas as pd

from pipeline.fnc.names import is_edge
from workflows.reports import figures as fig
from workflows.reports.boilerplate import methods_html
from workflows.reports.html import Section, figure, note, table, write_page
from workflows.reports.inputs import (
    edges_to_matrix,
    labels_by_scale,
    node_domains,
    node_groups,
)
from workflows.bids.naming import scale_of
from workflows.bids.provenance import read_sidecar
from workflows.group.base import mixed_repetition_times

__all__ = ["group_report"]


class _GroupFiles:
    """Group-level derivatives by their entities (names from msica_bids_config.json)."""

    def __init__(self, output_dir: Path) -> None:
        self.output_dir = output_dir

    def path(self, desc: str, suffix: str, extension: str = ".tsv", **entities) -> Path:
        from workflows.bids.naming import build_derivative_path

        return self.output_dir / build_derivative_path(
            {**entities, "desc": desc, "suffix": suffix, "extension": extension})

    def figure_path(self, desc: str, suffix: str, extension: str = ".svg", **entities) -> Path:
        return self.path(desc, suffix, extension, datatype="figures", **entities)

    def save(self, figure_obj, desc: str, suffix: str, extension: str, caption: str,
             **entities) -> str:
        path = fig.save_figure(figure_obj, self.figure_path(desc, suffix, extension, **entities))
        return figure(path, self.output_dir, caption)

    def read(self, desc: str, suffix: str, **kwargs) -> pd.DataFrame | None:
        path = self.path(desc, suffix)
        return pd.read_csv(path, sep="\t", **kwargs) if path.is_file() else None


def _qc_section(files: _GroupFiles) -> str:
    qc = files.read("denoise", "qc", na_values="n/a")
    if qc is None:
        return note("No group QC table (group/desc-denoise_qc.tsv).")
    links = []
    for participant in dict.fromkeys(qc["participant_id"]):
        page = files.output_dir / f"{participant}.html"
        links.append(f'<a href="{page.name}">{participant}</a>' if page.is_file()
                     else participant)
    columns = [c for c in ("participant_id", "session", "task", "run", "t_r", "n_volumes_kept",
                           "mean_fd", "max_fd", "tsnr_before", "tsnr_after") if c in qc]
    mixed = mixed_repetition_times(
        {str(p).removeprefix("sub-"): float(t) for p, t in zip(qc["participant_id"], qc["t_r"])}
    ) if "t_r" in qc else None
    return ((note(mixed) if mixed else "")
            + f"<p>Participant reports: {', '.join(links)}.</p>"
            + files.save(fig.plot_group_qc(qc), "denoise", "qc", ".svg",
                         "Mean framewise displacement and tSNR after denoising, per run.")
            + table(qc[columns]))


def _templates(files: _GroupFiles, layout) -> tuple[dict[int, Path], dict, str]:
    """Network maps per scale: the group's own (data-driven) or the templates used."""
    own = sorted(files.output_dir.glob("group/*scale-*_components.nii.gz"))
    if own:
        maps = {scale_of(p): p for p in own}
        labels = {}
        for scale, path in maps.items():
            tsv = path.with_name(path.name.replace("_components.nii.gz", "_labels.tsv"))
            labels[scale] = (pd.read_csv(tsv, sep="\t", dtype=str, keep_default_na=False)
                             if tsv.is_file() else None)
        return maps, labels, "networks estimated by the group level"
    components = layout.get(return_type="file", desc="ica", suffix="components",
                            extension=".nii.gz")
    first: dict[int, str] = {}
    for path in sorted(components):
        first.setdefault(scale_of(path), path)
    maps = {scale: Path(read_sidecar(path).get("Template", "")) for scale, path in first.items()}
    maps = {scale: path for scale, path in maps.items() if path.is_file()}
    return maps, labels_by_scale(list(first.values())), "templates used"


def _zscored(path: Path):
    """The maps z-scored over the voxels where any map is non-zero (GIFT's scaling), for display."""
    import nibabel as nb
    import numpy as np

    from pipeline.ica.scica import zscore_maps

    img = nb.load(path)
    data = np.asarray(img.dataobj, dtype=np.float64)
    inside = np.any(data != 0, axis=3)
    out = np.zeros(data.shape, dtype=np.float32)
    out[inside] = zscore_maps(data[inside].T)[0].T
    return nb.Nifti1Image(out, img.affine)


def _network_section(files: _GroupFiles, maps: dict[int, Path], labels: Mapping,
                     origin: str) -> str:
    if not maps:
        return note("No network maps were found (no template recorded in the participants' "
                    "network sidecars).")
    parts = [f"<p>Showing the {origin}.</p>"]
    for scale, path in sorted(maps.items()):
        img = _zscored(path)
        table_ = labels.get(scale)
        titles = [f"N{i + 1}" for i in range(img.shape[3])]
        has_stability = table_ is not None and "stability" in table_
        if table_ is not None and len(table_) == img.shape[3]:
            titles = list(table_["label"].astype(str))
            if has_stability:
                titles = [f"{t} Iq={float(s):.2f}" if s not in ("", "n/a") else t
                          for t, s in zip(titles, table_["stability"], strict=True)]
        caption = (f"Scale {scale}: {img.shape[3]} networks ({path.name}), z-scored, "
                   f"|z| > {fig.MAP_THRESHOLD}.")
        parts.append(files.save(fig.plot_network_grid(img, titles), "networks", "components",
                                ".png", caption, scale=scale))
        if has_stability:
            parts.append(files.save(fig.plot_stability(table_, f"scale {scale}"), "stability",
                                    "labels", ".svg", f"Scale {scale}: ICASSO stability of "
                                    "each network (kept networks in blue).", scale=scale))
    with_parents = {s: t for s, t in labels.items() if t is not None and "parent" in t
                    and (t["parent"].astype(str) != "n/a").any()}
    if with_parents:
        complete = {s: t for s, t in labels.items() if t is not None}
        parts.append(files.save(fig.plot_tree(complete), "tree", "labels", ".svg",
                                "Cross-scale tree: each network joined to its parent at the "
                                "next coarser scale."))
    return "".join(parts)


def _fnc_section(files: _GroupFiles, layout) -> tuple[str, list[str] | None]:
    features = files.read("fnc", "features", index_col=0)
    if features is None:
        return note("No FNC feature table (group/desc-fnc_features.tsv)."), None
    edges = features[[c for c in features.columns if is_edge(c)]].apply(pd.to_numeric,
                                                                        errors="coerce")
    matrix = edges_to_matrix(edges.mean())
    relmats = layout.get(return_type="file", desc="multiscale", suffix="relmat",
                         extension=".tsv")
    groups = node_groups(list(matrix.index), node_domains(min(relmats, default=None)))
    return files.save(fig.plot_fnc(matrix, groups, f"mean of {len(edges)} participants"),
                      "groupmean", "relmat", ".svg",
                      "Group mean static FNC (Fisher z) with network groups."), groups


def _dfnc_section(files: _GroupFiles, groups: list[str] | None) -> str:
    states = files.read("dfncstates", "relmat", index_col=0)
    if states is None:
        return note("No dFNC states (group/desc-dfncstates_relmat.tsv).")
    matrices = {name: edges_to_matrix(row) for name, row in states.iterrows()}
    metrics = files.read("dfnc", "features", index_col=0)
    fraction_columns = {f"dfnc_fraction_{name}": name for name in matrices}
    fractions = (metrics[[c for c in fraction_columns if c in metrics]]
                 .rename(columns=fraction_columns) if metrics is not None else pd.DataFrame())
    size = len(next(iter(matrices.values())))
    parts = [files.save(fig.plot_states(matrices, fractions.mean().to_dict(),
                                        groups if groups and len(groups) == size
                                        else ["networks"] * size),
                        "dfncstates", "relmat", ".svg",
                        f"{len(matrices)} dFNC states (cluster centroids).")]
    if not fractions.empty:
        parts.append(files.save(fig.plot_state_fractions(fractions), "dfncfractions",
                                "features", ".svg",
                                "Fraction of windows in each state, one dot per participant."))
    return "".join(parts)


def _targets(files: _GroupFiles) -> list[tuple[str, str]]:
    """``(tag, target)`` of every classified target (its metrics sidecar names it)."""
    from workflows.bids.naming import target_tag

    found = []
    for sidecar in sorted((files.output_dir / "group").glob("desc-*_metrics.json")):
        target = json.loads(sidecar.read_text()).get("Target")
        tag = sidecar.name.removeprefix("desc-").removesuffix("_metrics.json")
        if target and tag == target_tag(target):
            found.append((tag, target))
    return found


def _classifier_section(files: _GroupFiles) -> tuple[str, str]:
    targets = _targets(files)
    if not targets:
        none = note("No classifier results (run the group level with --targets).")
        return none, note("No gradient spectra (run the group level with --introspect).")
    parts, spectra = [], []
    for tag, target in targets:
        meta = read_sidecar(files.path(tag, "metrics"))
        p_value = meta.get("PermutationPValue")
        p_text = f"{p_value:.3g}" if isinstance(p_value, (int, float)) else "n/a"
        parts.append(f"<h3>{html.escape(target)}</h3><p>"
                     f"{meta.get('NumberOfParticipants', '?')} participants, "
                     f"{html.escape(str(meta.get('Validation', '')))}; permutation p = {p_text} "
                     f"({meta.get('NumberOfPermutations', 0)} permutations).</p>")
        if not meta.get("ChanceTested", isinstance(p_value, (int, float))):
            parts.append(note(f"{target}: chance has not been tested (no label permutations; "
                              "run with --n-permutations 100 or more). The metrics alone do "
                              "not show that the classifier beats chance.", css="error"))
        dropped = meta.get("ParticipantsWithoutFeatures") or []
        if dropped:
            parts.append(note(f"{len(dropped)} participant(s) of participants.tsv had no "
                              f"features and were left out: {', '.join(map(str, dropped))}."))
        harmonization = meta.get("Harmonization")
        if harmonization:
            protected = ", ".join(meta.get("ProtectedCovariates") or []) or "none"
            parts.append(f"<p>Harmonization: {html.escape(str(harmonization))} (protected "
                         f"covariates: {html.escape(protected)}). Baseline beside msica: "
                         f"{html.escape(str(meta.get('Baseline', 'none')))}.</p>")
        parts.append(table(files.read(tag, "metrics", index_col=0), index=True))
        per_site = files.read(f"{tag}persite", "metrics")
        if per_site is not None:
            parts.append("<p>Per test site (bootstrap 95% CIs; baseline_* columns: the plain "
                         "baseline on the same folds).</p>" + table(per_site))
        calibration = files.read(f"{tag}calibration", "metrics")
        if calibration is not None and not calibration.empty:
            parts.append(files.save(fig.plot_calibration(calibration, target),
                                    f"{tag}calibration", "metrics", ".svg",
                                    f"{target}: calibration of the cross-validated scores."))
        biomarkers = files.figure_path(f"{tag}biomarkers", "features")
        if biomarkers.is_file():
            parts.append(figure(biomarkers, files.output_dir,
                                f"{target}: top connections (effect size x selection "
                                "frequency across outer folds)."))
        report = files.read(f"{tag}biomarkers", "features")
        if report is not None and not report.empty:
            columns = [c for c in ("feature", "domain_a", "domain_b", "selection_frequency",
                                   "cohens_d", "eta_squared", "direction") if c in report]
            parts.append(table(report[columns].head(10)))
        spectrum = files.figure_path(f"{tag}introspect", "spectrum")
        if spectrum.is_file():
            spectra.append(figure(spectrum, files.output_dir,
                                  f"{target}: effective rank of the per-layer gradients during "
                                  "training, for all participants and per group."))
    return "".join(parts), "".join(spectra) or note(
        "No gradient spectra (run the group level with --introspect).")


def group_report(output_dir: str | Path,
                 failures: Mapping[str, BaseException] | None = None) -> Path:
    """Write ``OUTPUT_DIR/group.html`` from the group-level derivatives.

    Parameters
    ----------
    output_dir : path-like
        msica derivatives root.
    failures : mapping, optional
        Group-level steps that failed (node name to error), listed in the report.

    Returns
    -------
    Path
        ``OUTPUT_DIR/group.html``, written atomically.

    Raises
    ------
    FileNotFoundError
        If ``output_dir`` holds no msica derivatives.
    """
    from workflows.bids.derivatives import derivatives_layout

    output_dir = Path(output_dir)
    files = _GroupFiles(output_dir)
    layout = derivatives_layout(output_dir)
    maps, labels, origin = _templates(files, layout)
    fnc, groups = _fnc_section(files, layout)
    classifiers, spectra = _classifier_section(files)
    sections = [
        Section("qc", "Quality control", _qc_section(files)),
        Section("networks", "Networks", _network_section(files, maps, labels, origin)),
        Section("fnc", "Group FNC", fnc),
        Section("dfnc", "dFNC states", _dfnc_section(files, groups)),
        Section("classifiers", "Classifiers", classifiers),
        Section("introspection", "Gradient spectra", spectra),
    ]
    if failures:
        sections.append(Section("errors", "Errors", "".join(
            note(f"{where}: {exc}", css="error") for where, exc in failures.items())))
    sections.append(Section("methods", "Methods",
                            methods_html(output_dir, ("participant", "groupica", "group"))))
    return write_page(output_dir / "group.html", "msica: group report",
                      f"Group-level derivatives in {output_dir.name}/group/.", sections)
