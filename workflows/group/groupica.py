"""Data-driven mode at the group level: multi-scale group ICA and GICA back-reconstruction.

The participant level leaves one subject PCA per run in the PCA folder
(``WORK_DIR/subject_pca`` by default). This workflow fits the group ICA at
every model order on all of them, writes the multi-scale template to
``group/`` (one 4-D NIfTI and one labels TSV per scale, plus every component's
scores), back-reconstructs each run at each scale with GIFT's GICA, and
computes the runs' static and dynamic FNC, written under the same names as in
template mode so that the rest of the group level reads them unchanged.
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

from nipype.interfaces import utility as niu
from nipype.pipeline import engine as pe

from workflows.bids.sink import sink_factory
from workflows.execution.engine import Workflow

__all__ = ["collect_subject_pcas", "init_group_ica_wf"]


def collect_subject_pcas(pca_dir: Path, participant_label: list[str] | None = None) -> list[Path]:
    """Find the subject PCAs written by the participant level, sorted by name.

    Raises
    ------
    FileNotFoundError
        If there are none (for the selected participants).
    """
    files = sorted(Path(pca_dir).glob("sub-*_desc-pca.npz"))
    if participant_label:
        wanted = {f"sub-{label}" for label in participant_label}
        files = [f for f in files if f.name.split("_")[0] in wanted]
    if not files:
        raise FileNotFoundError(
            f"No subject PCA in {pca_dir}; run the participant level with the same "
            "--model-orders and --work-dir (or --pca-dir) first."
        )
    return files


def init_group_ica_wf(
    *,
    pca_files: list[Path],
    output_dir: Path,
    model_orders: tuple[int, ...],
    algorithm: str = "infomax",
    n_runs: int = 10,
    dfnc_window: int = 30,
    seed: int = 0,
    device: str = "auto",
    dataset_links: dict[str, str] | None = None,
    name: str = "msica_groupica_wf",
) -> Workflow:
    """Build the data-driven group ICA workflow.

    Parameters
    ----------
    pca_files : list of Path
        Subject PCAs (:class:`~workflows.interfaces.groupica.SubjectPCA`), one per run.
    output_dir : Path
        msica derivatives root.
    model_orders : tuple of int
        Group ICA model orders.
    algorithm : {"infomax", "fastica"}
        ICA algorithm.
    n_runs : int
        ICASSO runs per order.
    dfnc_window : int
        Sliding-window length in TRs.
    seed : int
        Seed of the group ICA.
    device : str
        Torch device of the ICA.
    dataset_links : dict, optional
        Input dataset names and roots, for the ``Sources`` URIs of sidecars.
    name : str
        Workflow name.

    Returns
    -------
    Workflow
    """
    from pipeline.ica.persistence import subject_pca_sidecar
    from workflows.participant.networks import connect_networks_fnc
    from workflows.interfaces.groupica import GICABackReconstruct, MultiscaleGroupICA

    metas = [json.loads(subject_pca_sidecar(f).read_text()) for f in pca_files]
    t_rs = {round(m["RepetitionTime"], 6) for m in metas}
    workflow = Workflow(name=name)
    workflow.__desc__ = (
        f"Networks were estimated by spatial group ICA at model orders "
        f"{', '.join(map(str, model_orders))} (@gift): each of {len(pca_files)} denoised run(s) "
        "was reduced by temporal PCA, the stacked reductions by a group PCA computed block by "
        f"block, and {algorithm} ICA was run {n_runs} time(s) per order with ICASSO clustering "
        "(@icasso); networks were kept by stability, brain-edge overlap and low/high-frequency "
        "power ratio as in NeuroMark, linked across scales by spatial correlation, and "
        "back-reconstructed for every run with GICA (@gica)."
    )
    sink = sink_factory(output_dir, dataset_links=dataset_links)
    group_ica = pe.Node(
        MultiscaleGroupICA(pca_files=[str(f) for f in pca_files], model_orders=list(model_orders),
                           algorithm=algorithm, n_runs=n_runs, random_state=seed,
                           device=device),
        name="group_ica")
    if len(t_rs) == 1:
        group_ica.inputs.t_r = float(t_rs.pop())
    sources = [m["SourceFile"] for m in metas]
    ds_labels = sink("ds_groupica_labels", sources, desc="groupica", suffix="labels",
                     extension=".tsv")
    workflow.connect([(group_ica, ds_labels, [("all_labels_file", "in_file"),
                                              ("meta", "meta_dict")])])  # fmt:skip
    pick_labels_of = {}
    for index, order in enumerate(model_orders):
        pick_template = pe.Node(niu.Select(index=index), name=f"template_{order}",
                                run_without_submitting=True)
        pick_labels = pe.Node(niu.Select(index=index), name=f"labels_{order}",
                              run_without_submitting=True)
        ds_template = sink(f"ds_template_{order}", sources, scale=order, desc="groupica",
                           suffix="components", extension=".nii.gz")
        ds_scale_labels = sink(f"ds_labels_{order}", sources, scale=order, desc="groupica",
                               suffix="labels", extension=".tsv")
        workflow.connect([
            (group_ica, pick_template, [("template_files", "inlist")]),
            (group_ica, pick_labels, [("labels_files", "inlist")]),
            (pick_template, ds_template, [("out", "in_file")]),
            (pick_labels, ds_scale_labels, [("out", "in_file")]),
            (group_ica, ds_template, [("meta", "meta_dict")]),
            (group_ica, ds_scale_labels, [("meta", "meta_dict")]),
        ])  # fmt:skip
        pick_labels_of[order] = pick_labels

    by_subject: dict[str, list[int]] = defaultdict(list)
    for run_index, meta in enumerate(metas):
        by_subject[meta["Subject"]].append(run_index)
    for label, run_indices in by_subject.items():
        sub_wf = Workflow(name=f"sub_{label}_wf")
        for run_index in run_indices:
            meta = metas[run_index]
            run_wf = Workflow(name=f"run_{run_index:04d}_wf")
            run_sink = sink_factory(output_dir, source_file=meta["SourceFile"],
                                    dataset_links=dataset_links)
            nodes = []
            for order in model_orders:
                node = pe.Node(GICABackReconstruct(pca_file=str(pca_files[run_index]),
                                                   run_index=run_index, scale=order),
                               name=f"gica_{order}")
                nodes.append(node)
            connect_networks_fnc(run_wf, run_sink, nodes, (nodes[0], "sample_mask"),
                                 t_r=meta["RepetitionTime"],
                                 confounds_file=meta.get("ConfoundsFile"),
                                 dfnc_window=dfnc_window)
            sub_wf.add_nodes([run_wf])
            for order, node in zip(model_orders, nodes):
                where = f"{run_wf.name}.{node.name}"
                workflow.connect([
                    (group_ica, sub_wf, [("model_file", f"{where}.model_file")]),
                    (pick_labels_of[order], sub_wf, [("out", f"{where}.labels_file")]),
                ])  # fmt:skip
    return workflow
