"""
A single-cell walk-through with AnnData
=======================================

This tutorial runs bcNMF the way a scanpy user would: one AnnData object holding stimulated
and control cells, the tool :func:`bcnmf.tl.bcnmf`, the plots of :mod:`bcnmf.pl` and scanpy,
an ``.h5ad`` file written and read back, and the same fit from the command line.

**The data** are simulated by :func:`bcnmf.datasets.make_cell_type_counts`, so that we know
the answer. Both conditions contain the same cell types in the same proportions, and cell
type is by far the strongest signal. Half of the stimulated cells respond to the stimulus by
raising a set of **response genes**, by an amount that depends on their cell type; control
cells never respond. A factorisation of the stimulated cells alone spends its first topics
on the cell types. bcNMF, told that the control cells are the background, should find a
topic for the response.

The sizes are small (600 genes, 300 cells per condition, three cell types) so that the page
runs in a couple of minutes, and the fit stops at a looser tolerance than the default
(``tol=1e-3``); real data sets are larger.
"""

# %%
# Build the AnnData
# -----------------
#
# The generator returns the stimulated (target) and control (background) counts separately,
# with the truth: each cell's type, which stimulated cells respond, and which genes are the
# response genes. We stack them into one AnnData, with the condition in ``obs`` and the raw
# counts kept in a layer, as one usually does before normalising.

import subprocess
import sys
import tempfile
import warnings
from pathlib import Path

import anndata as ad
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import scanpy as sc
import scipy.sparse as sp

import bcnmf
from bcnmf.datasets import make_cell_type_counts

sim = make_cell_type_counts(strength=1.0, n_genes=600, n_target=300, n_background=300,
                            n_types=3, n_response=40, random_state=0, sparse=True)
n_target, n_background = sim.X.shape[0], sim.Y.shape[0]

obs = pd.DataFrame(
    {"condition": ["stimulated"] * n_target + ["control"] * n_background,
     "cell_type": [f"type {t + 1}" for t in np.concatenate([sim.target_type,
                                                             sim.background_type])],
     # the truth, for checking the result only: does the cell respond to the stimulus?
     "responding": np.concatenate([sim.labels, np.zeros(n_background, dtype=int)]) == 1},
    index=[f"cell_{i}" for i in range(n_target + n_background)])
obs["condition"] = obs["condition"].astype("category")
obs["cell_type"] = obs["cell_type"].astype("category")
var = pd.DataFrame(index=[f"gene_{j}" for j in range(sim.X.shape[1])])
var["response_gene"] = False
var.iloc[sim.response_genes, var.columns.get_loc("response_gene")] = True

adata = ad.AnnData(X=sp.vstack([sim.X, sim.Y]).tocsr(), obs=obs, var=var)
adata.layers["counts"] = adata.X.copy()
adata

# %%
# Normalise as usual
# ------------------
#
# Every cell is scaled to the same total and log-transformed, so ``adata.X`` holds the
# log-normalised values and ``adata.layers["counts"]`` the raw counts.

sc.pp.normalize_total(adata, target_sum=1e4)
sc.pp.log1p(adata)

# %%
# Which loss for which data
# -------------------------
#
# :func:`bcnmf.tl.bcnmf` offers two losses:
#
# - ``beta_loss="frobenius"`` (the default), the squared error, for log-normalised data in
#   ``adata.X``: the usual pairing for single-cell data, as for PCA;
# - ``beta_loss="poisson"`` for the raw counts (``layer="counts"`` or ``use_raw=True``):
#   the Poisson likelihood is the model of counts, so no normalisation is chosen for you
#   and a cell's depth is carried by its codes. The tool refuses input that looks
#   log-transformed with this loss and says where the counts might be.
#
# On the simulations of the documentation both find the target's programs. On this
# cell-type simulation the squared error on log-normalised data does so over a much wider
# range of ``alpha`` than the Poisson loss, and each Poisson sweep costs more (its
# logarithms), so this page uses the squared error; the measurements are on the
# :doc:`single-cell page <../single_cell>`. The Poisson fit of the same object would be:
#
# .. code-block:: python
#
#     bcnmf.tl.bcnmf(adata, "condition", background="control", n_components=3,
#                    beta_loss="poisson", layer="counts")
#
# Fit
# ---
#
# The one-object form: ``groupby`` names the ``obs`` column and ``background`` the value(s)
# that mark the background cells; every other cell is the target. We ask for three topics:
# the cell types are common to both conditions, so the shared topics (fitted to the control
# cells alone) take care of them, and a few contrastive topics are enough to look for what
# only the stimulated cells have. ``alpha`` keeps its default ``"auto"``.

bcnmf.tl.bcnmf(adata, "condition", background="control", n_components=3, tol=1e-3,
               max_iter=2000)
record = adata.uns["bcnmf"]
print("alpha chosen:", record["alpha"], "| sweeps:", record["n_iter"])
print("target cells:", record["n_target"], "| background cells:", record["n_background"])
print("written: obsm", list(adata.obsm), "| varm", list(adata.varm))

# %%
# The results follow scanpy's conventions: the codes of every cell in
# ``obsm["X_bcnmf"]`` (background cells get their own, background codes), the loadings of
# every gene in ``varm["bcnmf"]``, and everything else in ``uns["bcnmf"]``.
#
# Which topics are enriched in the stimulated cells
# -------------------------------------------------
#
# ``uns["bcnmf"]["enrichment"]`` is the :func:`bcnmf.topic_enrichment` table: for every
# topic, the mean share of the cells' codes it takes in the target and in the background,
# the effect size (Cohen's d), a permutation p-value with its Benjamini-Hochberg q-value,
# and ``enriched`` for topics used more in the target at ``q_value <= 0.05``. The p-values
# treat cells as independent and the topics were fitted on these cells, so they are
# optimistic. On real data with several donors per condition, test at the level of donors:
# ``sample_key="donor"`` names the ``obs`` column that holds them (the
# :doc:`statistics page <../statistics>` explains the two tests).

enrichment = record["enrichment"]
enrichment[["usage_target", "usage_background", "log2_fold_change", "effect_size",
            "q_value", "enriched"]].round(3)

# %%
# The volcano plot draws the same table: effect size to the right, significance upwards,
# enriched topics in red, the dashed line at q = 0.05.

ax = bcnmf.pl.enrichment_volcano(enrichment)
ax.figure.tight_layout()

# %%
# The top genes of the enriched topic
# -----------------------------------
#
# A topic's loadings are a column of ``varm["bcnmf"]``. Sorting it gives the topic's top
# genes; here we can also check them against the planted response genes.

top_topic = enrichment["effect_size"].idxmax()  # a row label such as "topic 3"
k = enrichment.index.get_loc(top_topic)  # its column in varm["bcnmf"] (0-based)
loadings = pd.Series(adata.varm["bcnmf"][:, k], index=adata.var_names, name="loading")
top_genes = loadings.sort_values(ascending=False).head(20)
print(f"{top_topic}: {adata.var.loc[top_genes.index, 'response_gene'].sum()} of its top "
      f"{top_genes.size} genes are response genes ({int(adata.var['response_gene'].sum())} "
      f"of {adata.n_vars} genes are)")
top_genes.to_frame().join(adata.var["response_gene"]).head(10)

# %%
# :func:`bcnmf.pl.loadings` shows the top genes of every topic at once, each topic scaled
# to its largest loading. Genes dark in one column only are specific to that topic.

ax = bcnmf.pl.loadings(adata, n_top=8)
ax.figure.tight_layout()

# %%
# Topic usage, stimulated against control
# ---------------------------------------
#
# :func:`bcnmf.pl.topic_usage` draws, for each topic, the distribution over cells of the
# topic's share of the cell's codes (``normalize=True``; the quantity the enrichment test
# compares), in the target (stimulated) and background (control) cells, split as in the
# fit. Look for the topic whose target distribution sits well above its background one,
# with a bulge of high shares: the responding half of the stimulated cells.

ax = bcnmf.pl.topic_usage(adata, normalize=True)
ax.figure.tight_layout()

# %%
# With scanpy
# -----------
#
# Because the codes are stored as ``obsm["X_bcnmf"]``, scanpy's embedding plot takes
# ``basis="bcnmf"``: each axis is one topic. Here the enriched topic is on the y axis and
# the cells are coloured by condition, by cell type and by the planted truth. Only
# responding stimulated cells reach high on the enriched topic, whatever their type.

other = next(t for t in range(3) if t != k)
with warnings.catch_warnings():
    # scanpy's plotting calls Colormap.set_bad, which recent matplotlib marks as pending
    # deprecation; the warning concerns scanpy, not this analysis
    warnings.filterwarnings("ignore", message="The set_bad function",
                            category=PendingDeprecationWarning)
    with plt.rc_context({"figure.figsize": (3.2, 3.2)}):
        sc.pl.embedding(adata, basis="bcnmf", components=f"{other + 1},{k + 1}",
                        color=["condition", "cell_type", "responding"], wspace=0.45,
                        show=False)

# %%
# How the fit ran
# ---------------
#
# :func:`bcnmf.pl.loss_history` draws the objective that the fit minimises (the target's
# divergence minus alpha times the background's) and both divergences, per sweep. The
# curves should flatten out; a curve still falling steeply at the last sweep means the fit
# stopped early.

ax = bcnmf.pl.loss_history(adata)
ax.figure.tight_layout()

# %%
# :func:`bcnmf.pl.alpha_path` shows how ``alpha="auto"`` chose alpha: the held-out contrast
# (the probability that the topics explain a held-out target cell better than a held-out
# background cell; 0.5 is chance) at every screened alpha, the choice starred, and alphas
# whose fit collapsed drawn hollow.

ax = bcnmf.pl.alpha_path(adata)
ax.figure.tight_layout()

# %%
# Save and read back
# ------------------
#
# Everything :func:`bcnmf.tl.bcnmf` writes can be stored in an ``.h5ad`` file. (Every file
# of this page goes to a temporary folder, deleted at the end.)

workdir = tempfile.TemporaryDirectory()
folder = Path(workdir.name)
adata.write_h5ad(folder / "cells.h5ad")
back = ad.read_h5ad(folder / "cells.h5ad")
print("same codes:", np.array_equal(back.obsm["X_bcnmf"], adata.obsm["X_bcnmf"]))
print("same enrichment table:",
      back.uns["bcnmf"]["enrichment"]["q_value"].equals(enrichment["q_value"]))

# %%
# The same fit from the command line
# ----------------------------------
#
# ``bcnmf fit`` reads the ``.h5ad`` file and writes a run folder: the saved model, codes,
# loadings, the fit's history, the enrichment table, and with ``--write-h5ad`` the AnnData
# annotated as :func:`bcnmf.tl.bcnmf` does it. In a shell:
#
# .. code-block:: bash
#
#     bcnmf fit cells.h5ad --groupby condition --background-value control \
#         -k 3 --alpha 1.5 --tol 1e-3 --max-iter 2000 --write-h5ad -o run
#
# Here we pass the alpha that ``alpha="auto"`` chose above: the automatic choice screens
# alphas and then fits at the chosen one exactly as a fixed alpha would, so the command
# line reproduces the object above without screening again. We run the command with the
# Python of this page.

command = [sys.executable, "-m", "bcnmf", "fit", str(folder / "cells.h5ad"),
           "--groupby", "condition", "--background-value", "control",
           "-k", "3", "--alpha", repr(float(record["alpha"])), "--tol", "1e-3",
           "--max-iter", "2000", "--write-h5ad", "--no-progress",
           "-o", str(folder / "run")]
result = subprocess.run(command, capture_output=True, text=True, check=True)
print(result.stdout.replace(str(folder), "<tmp>"))

# %%
# The annotated file holds the same codes as the object fitted in Python:

annotated = ad.read_h5ad(folder / "run" / "annotated.h5ad")
print("same codes as bcnmf.tl.bcnmf:",
      np.allclose(annotated.obsm["X_bcnmf"], adata.obsm["X_bcnmf"]))
workdir.cleanup()

# %%
# What you have seen
# ------------------
#
# - One call, :func:`bcnmf.tl.bcnmf`, splits the object by an ``obs`` column, chooses
#   ``alpha`` and writes codes, loadings and statistics where scanpy expects them.
# - The enrichment table picked out the topic of the stimulus response, and its top genes
#   were the planted response genes, although cell type dominates the data.
# - The ``bcnmf.pl`` plots and ``sc.pl.embedding(adata, basis="bcnmf")`` read the results
#   from the object; the object round-trips through ``.h5ad``; ``bcnmf fit`` does the same
#   from a shell.
