"""Data-driven mode at the group level: multi-scale group ICA and GICA back-reconstruction.

The participant level leaves one subject PCA per run in the PCA folder
(``WORK_DIR/subject_pca`` by default). This workflow fits the group ICA at
every model order on all of them, writes the multi-scale template to
``group/`` (one 4-D NIfTI and one labels TSV per scale, plus every component's
scores), back-reconstructs each run at each scale with GIFT's GICA, and
computes the runs' static and dynamic FNC, written under the same names as in
template mode so that the rest of the group level reads them unchanged. Runs are
processed in a few chunks (:func:`chunk_runs`), one run at a time in each, so the
graph and the memory of a node do not grow with the number of runs.
"""

from __future__ import annotations

import json
from itertools import pairwise
from pathlib import Path

from nipype.interfaces import utility as niu
from nipype.pipeline import engine as pe

from pipeline.fnc.static import DEFAULT_FNC_MEASURE, FNC_MEASURES
from pipeline.ica.backrecon import GICA
from workflows._docs import fill_doc
from workflows.bids.naming import participant_of
from workflows.bids.sink import sink_factory
from workflows.execution.engine import Workflow

__all__ = ["CHUNKS_PER_PROCESS", "chunk_runs", "collect_subject_pcas", "init_group_ica_wf"]

#: Chunks of runs per process for back-reconstruction and FNC: enough to balance the
#: processes' load, few enough that Nipype's scheduling does not grow with the cohort.
CHUNKS_PER_PROCESS = 3


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
        files = [f for f in files if participant_of(f) in wanted]
    if not files:
        raise FileNotFoundError(
            f"No subject PCA in {pca_dir}; run the participant level with the same "
            "--model-orders and --work-dir (or --pca-dir) first."
        )
    return files


def chunk_runs(n_runs: int, nprocs: int) -> list[list[int]]:
    """Split runs ``0 .. n_runs - 1`` into consecutive chunks, ``CHUNKS_PER_PROCESS`` per process.

    Examples
    --------
    >>> chunk_runs(8, 1)
    [[0, 1], [2, 3, 4], [5, 6, 7]]
    >>> chunk_runs(2, 4)
    [[0], [1]]
    """
    n_chunks = max(1, min(n_runs, CHUNKS_PER_PROCESS * nprocs))
    bounds = [i * n_runs // n_chunks for i in range(n_chunks + 1)]
    return [list(range(start, stop)) for start, stop in pairwise(bounds)]


@fill_doc
def init_group_ica_wf(
    *,
    pca_files: list[Path],
    output_dir: Path,
    model_orders: tuple[int, ...],
    algorithm: str = "infomax",
    n_runs: int = 10,
    fnc_measure: str = DEFAULT_FNC_MEASURE,
    dfnc_window: int = 30,
    seed: int = 0,
    device: str = "auto",
    dataset_links: dict[str, str] | None = None,
    nprocs: int = 1,
    name: str = "msica_groupica_wf",
) -> Workflow:
    """Build the data-driven group ICA workflow.

    Parameters
    ----------
    pca_files : list of Path
        Subject PCAs (:class:`~workflows.interfaces.groupica.SubjectPCA`), one per run.
    %(output_dir)s
    model_orders : tuple of int
        Group ICA model orders.
    algorithm : {"infomax", "fastica"}
        ICA algorithm.
    n_runs : int
        ICASSO runs per order.
    fnc_measure : str
        Static-FNC measure of the runs, a key of :data:`pipeline.fnc.static.FNC_MEASURES`.
    dfnc_window : int
        Sliding-window length in TRs.
    seed : int
        Seed of the group ICA.
    device : str
        Torch device of the ICA.
    %(dataset_links)s
    nprocs : int
        Processes of the run: back-reconstruction, FNC and their derivatives are done
        in :func:`chunk_runs` ``(len(pca_files), nprocs)`` nodes, one run at a time
        in each, so the graph does not grow with the number of runs.
    %(wf_name)s

    Returns
    -------
    Workflow
    """
    from pipeline.ica.persistence import subject_pca_sidecar
    from workflows.interfaces.groupica import GICANetworksChunk, MultiscaleGroupICA

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
        f"back-reconstructed for every run with {GICA.description}."
    )
    if fnc_measure != DEFAULT_FNC_MEASURE:  # GIFT's FNC: the text as before the option
        workflow.__desc__ += (f" Static FNC ({FNC_MEASURES[fnc_measure].summary}) was "
                              "computed within and across scales.")
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
    per_scale = (("template", "template_files", "components", ".nii.gz"),
                 ("labels", "labels_files", "labels", ".tsv"))
    for index, order in enumerate(model_orders):
        for kind, field, suffix, extension in per_scale:
            pick = pe.Node(niu.Select(index=index), name=f"{kind}_{order}",
                           run_without_submitting=True)
            ds = sink(f"ds_{kind}_{order}", sources, scale=order, desc="groupica",
                      suffix=suffix, extension=extension)
            workflow.connect([
                (group_ica, pick, [(field, "inlist")]),
                (pick, ds, [("out", "in_file")]),
                (group_ica, ds, [("meta", "meta_dict")]),
            ])  # fmt:skip

    for index, run_indices in enumerate(chunk_runs(len(pca_files), nprocs)):
        chunk = pe.Node(
            GICANetworksChunk(pca_files=[str(pca_files[i]) for i in run_indices],
                              run_indices=run_indices, scales=list(model_orders),
                              output_dir=str(output_dir), fnc_measure=fnc_measure,
                              dfnc_window=dfnc_window),
            name=f"networks_fnc_{index}")
        if dataset_links:
            chunk.inputs.dataset_links = dict(dataset_links)
        workflow.connect([(group_ica, chunk, [("model_file", "model_file"),
                                              ("labels_files", "labels_files")])])  # fmt:skip
    return workflow
