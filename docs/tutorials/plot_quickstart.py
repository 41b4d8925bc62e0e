"""
Quick start: the bundled mouse data
===================================

This tutorial fits bcNMF to the protein data that ship with the package, looks at how the
contrast weight ``alpha`` was chosen and at what the topics contain, compares bcNMF with plain
NMF against the genotype of the mice, and saves and reloads the fitted model. It needs no
download and runs in one to two minutes on two cores.

**The data.** Levels of 77 proteins measured in the cortex of mice (Higuera, Gardiner & Cios
2015; UCI "Mice Protein Expression", CC BY 4.0), arranged as in the contrastive PCA and bcNMF
papers:

- the **target** is 270 measurements of saline-treated mice that were *not* stimulated to
  learn, half of them normal (control) and half Ts65Dn, a mouse model of Down syndrome;
- the **background** is 135 measurements of saline-treated control mice that *were*
  stimulated to learn.

Both groups vary for reasons that have nothing to do with the genotype: from mouse to mouse,
and in the overall protein level of a measurement. The background has that variation but no
Ts65Dn mice, so what the target has *in excess* of the background should be, in large part,
the genotype (in part only: the two groups also differ in the learning stimulus). The
genotype labels are used below only to read and score the result, never to fit.
"""

# %%
# Load the data
# -------------
#
# :func:`bcnmf.datasets.load_mice_protein` returns a small frozen object with the target
# ``X`` and background ``Y`` (measurements as rows, proteins as columns, as in scikit-learn
# and AnnData), the genotype ``labels`` of the target rows and the protein names. Each mouse
# was measured 15 times (technical replicates), and the mouse of every row is recorded too.

import tempfile
import warnings
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from sklearn.decomposition import NMF
from sklearn.exceptions import ConvergenceWarning

import bcnmf
from bcnmf.datasets import load_mice_protein
from bcnmf.metrics import cluster_ari
from bcnmf.topics import topic_usage

data = load_mice_protein()
print("target:", data.X.shape, " background:", data.Y.shape)
print("genotypes in the target:",
      {str(name): int(n) for name, n in zip(data.label_names, np.bincount(data.labels))})
print("mice: target", np.unique(data.target_samples).size,
      "| background", np.unique(data.background_samples).size)

# %%
# Fit bcNMF
# ---------
#
# :class:`bcnmf.BCNMF` is a scikit-learn estimator. ``n_components`` is the number of topics
# K; five topics is the setting the documentation uses for this data. ``fit`` takes the
# target as ``X`` and the background as ``background=``.
#
# Three settings differ from the defaults here, all three as in ``bcnmf demo``:
#
# - ``n_shared=0``. By default the model first fits *shared topics* to the background alone
#   and lets both datasets use them, so that what the two share does not drive the
#   contrastive topics. On this background the shared topics learn the nine individual
#   mice (15 replicates each) instead of biological programs, and then explain the
#   genotype difference as mixtures of mice. The :doc:`model page <../model>` (section
#   "Where it fails") has the measurements. Few features and a background made of
#   replicates of a few samples is the case in which to try ``n_shared=0``.
# - ``max_iter=5000``. The multiplicative updates converge slowly on this data; with the
#   default of 500 sweeps the fit stops early and says so with a ``ConvergenceWarning``.
# - ``n_init=5`` restarts, of which the most typical one (the medoid) is kept.
#
# ``alpha``, the weight of the contrast, keeps its default ``"auto"``: before the real fit
# the model screens a grid of alphas with short fits on halves of the cells and keeps the
# one whose topics best tell held-out target cells from held-out background cells. No
# labels are involved.

model = bcnmf.BCNMF(n_components=5, n_shared=0, max_iter=5000, n_init=5, random_state=0)
codes = model.fit_transform(data.X, background=data.Y)
print("codes of the target:", codes.shape, " topics:", model.components_.shape)
print(f"alpha chosen: {model.alpha_:g}  (sweeps run: {model.n_iter_})")

# %%
# How alpha was chosen
# --------------------
#
# ``model.alpha_path_`` holds one row per screened alpha. The column to read is
# ``contrast``: the probability that a held-out target cell is better explained by the
# topics than a held-out background cell. 0.5 means the topics explain both alike; 1 means
# they explain every target cell better than every background cell.

path = pd.DataFrame(model.alpha_path_)
path[["alpha", "contrast", "stability", "explained_target", "explained_background",
      "chosen"]].round(3)

# %%
# :func:`bcnmf.pl.alpha_path` draws the same table. Look for three things: the star (the
# chosen alpha), how flat the curve is around it (a flat curve means the choice is not
# critical), and hollow grey points, if any (alphas so large that the fit collapsed; the
# rule never picks them). The dashed line at 0.5 is chance.

ax = bcnmf.pl.alpha_path(model, stability=True)
ax.figure.tight_layout()

# %%
# Which topics are enriched in the target
# ---------------------------------------
#
# :func:`bcnmf.topic_enrichment` compares, topic by topic, how much the target cells and
# the background cells use the topic (each cell's share of its codes). ``effect_size`` is
# the difference of the mean shares over their pooled standard deviation (Cohen's d);
# ``q_value`` is a permutation p-value adjusted for the five topics; ``enriched`` marks
# topics used more in the target with ``q_value <= 0.05``.
#
# ``labels=`` adds, for each genotype, a Welch t-test of the topic's share in the target
# cells of that genotype against the other target cells (columns ``t[...]``, ``p[...]`` and
# ``signed_log10_p[...]``; the last is the sign of ``t`` times :math:`-\log_{10} p`, so
# 10 means p = 1e-10 with the topic higher in that group). The labels are used only in this
# table, never by the fit.

genotype = np.asarray(data.label_names)[data.labels]  # "Control" or "Ts65Dn" per target row
enrichment = bcnmf.topic_enrichment(model, data.X, background=data.Y, labels=genotype)
enrichment[["usage_target", "usage_background", "effect_size", "q_value", "enriched",
            "t[Ts65Dn]", "signed_log10_p[Ts65Dn]"]].round(3)

# %%
# Read the table in two steps. First the comparison with the background: the mean shares
# of the target and of the background are close for every topic. That is expected here,
# because half of the target is control mice, which resemble the background. Then the
# genotype columns: some topics are used far more by the Ts65Dn mice than by the control
# mice of the target (large positive ``t[Ts65Dn]``), others far less. These are the topics
# that carry the genotype.
#
# Two cautions about the p-values. The model was fitted on these same cells, so they are
# optimistic. And both tests above treat every row as independent, while each mouse was
# measured 15 times. ``samples=`` and ``background_samples=`` (the mouse of every row) move
# the target-against-background test to the level of mice: each mouse's mean share, 18
# target mice against 9 background mice (the :doc:`statistics page <../statistics>` says
# what each test assumes).

by_mouse = bcnmf.topic_enrichment(model, data.X, background=data.Y,
                                  samples=data.target_samples,
                                  background_samples=data.background_samples)
by_mouse[["test", "n_samples_target", "n_samples_background", "effect_size", "p_value",
          "q_value", "enriched"]].round(3)

# %%
# Compare ``p_value`` with the row-level one above: with the mice as units, the 15
# replicates of a mouse count once, and the p-values are larger.
#
# The figure shows the share of the topic most used by the Ts65Dn mice, for the control
# and Ts65Dn mice of the target and for the background. Shares are what the enrichment
# test compares: each cell's codes divided by their sum
# (:func:`bcnmf.topics.topic_usage`).

ts_topic = enrichment["t[Ts65Dn]"].idxmax()  # a row label such as "topic 2"
k = enrichment.index.get_loc(ts_topic)  # its row in components_ (0-based)
share_target = topic_usage(model, data.X)[:, k]
share_background = topic_usage(model, data.Y, as_background=True)[:, k]
groups = {"target: Control": share_target[genotype == "Control"],
          "target: Ts65Dn": share_target[genotype == "Ts65Dn"],
          "background": share_background}
fig, ax = plt.subplots(figsize=(4.5, 3))
ax.boxplot(list(groups.values()), showfliers=False)
ax.set_xticks([1, 2, 3], list(groups))
ax.set_ylabel(f"share of {ts_topic}")
ax.set_title(f"{ts_topic}: the topic most used by Ts65Dn mice")
fig.tight_layout()

# %%
# What the topics contain
# -----------------------
#
# Each topic is a non-negative profile over the 77 proteins (a row of ``components_``).
# :func:`bcnmf.top_features` lists the proteins with the largest loadings; ``weight`` is
# the loading as a fraction of the topic's total. The model was fitted on plain arrays, so
# the protein names are passed explicitly. With ``X`` and ``labels`` it also tests each
# listed protein itself between the genotypes, which shows whether the protein, not only
# the topic, differs.

top = bcnmf.top_features(model, n_top=8, feature_names=data.feature_names, X=data.X,
                         labels=genotype)
top.loc[top["topic"] == ts_topic,
        ["rank", "feature", "loading", "weight", "t[Ts65Dn]", "signed_log10_p[Ts65Dn]"]].round(3)

# %%
# :func:`bcnmf.pl.loadings` draws the top proteins of every topic as a heatmap, each topic
# scaled to its largest loading. A protein that is dark in one column only is specific to
# that topic; one that is dark in several columns is shared by them.

ax = bcnmf.pl.loadings(model, n_top=5, feature_names=data.feature_names)
ax.figure.tight_layout()

# %%
# bcNMF against plain NMF
# -----------------------
#
# Plain NMF (scikit-learn's :class:`~sklearn.decomposition.NMF`) factorises the target
# alone, so its topics describe whatever varies most in the target, genotype or not. To
# compare the two we cluster each method's target codes into two groups with KMeans and
# measure the agreement of the clusters with the genotype by the adjusted Rand index
# (:func:`bcnmf.metrics.cluster_ari`: 1 is perfect agreement, 0 is chance). The codes of
# every cell are first divided by their sum (``normalize=True``), so that the clusters
# reflect the mix of topics, not the overall protein level of a measurement.
#
# Both methods depend on their seed (NMF through its random start; bcNMF through the split
# of the cells that chooses alpha and the random starts of its restarts after the first),
# so one seed says little; we fit five seeds and give the mean and the spread. NMF gets the same budget of sweeps. Should a fit reach
# its sweep limit, its ``ConvergenceWarning`` is recorded in the table rather than raised.
# ``bcnmf demo`` and the :doc:`benchmarks page <../benchmarks>` run the same comparison.

rows = []
for seed in range(5):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        if seed == 0:
            bc_codes = codes  # the model fitted above
        else:
            bc_codes = bcnmf.BCNMF(n_components=5, n_shared=0, max_iter=5000, n_init=5,
                                   random_state=seed).fit_transform(data.X, background=data.Y)
    rows.append({"method": "bcNMF", "seed": seed,
                 "ari": cluster_ari(bc_codes, data.labels, normalize=True),
                 "converged": not caught})
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        nmf_codes = NMF(n_components=5, init="random", max_iter=5000,
                        random_state=seed).fit_transform(data.X)
    rows.append({"method": "NMF", "seed": seed,
                 "ari": cluster_ari(nmf_codes, data.labels, normalize=True),
                 "converged": not caught})

scores = pd.DataFrame(rows)
scores.pivot(index="seed", columns="method", values="ari").round(3)

# %%
# Per method, the mean and the standard deviation over the five seeds, and how many fits
# reached their sweep limit:

summary = scores.groupby("method").agg(mean_ari=("ari", "mean"), sd_ari=("ari", "std"),
                                       not_converged=("converged", lambda c: int((~c).sum())))
summary.round(3)

# %%
# The figure shows every seed, with the mean as a black line. Read the spread as well as
# the mean: nothing tells plain NMF that the genotype is what matters, so whether its
# topics split the mice by genotype depends on its start; bcNMF is told, through the
# background, what to ignore.

fig, ax = plt.subplots(figsize=(4, 3))
for i, method in enumerate(["NMF", "bcNMF"]):
    values = scores.loc[scores["method"] == method, "ari"]
    ax.scatter(np.full(values.size, i), values, color=["#999999", "#d62728"][i], zorder=2)
    ax.hlines(values.mean(), i - 0.25, i + 0.25, color="black")
ax.set_xticks([0, 1], ["NMF", "bcNMF"])
ax.set_xlim(-0.6, 1.6)
ax.set_ylim(-0.05, 1.05)
ax.set_ylabel("ARI with genotype")
ax.set_title("KMeans on normalised codes, 5 seeds")
fig.tight_layout()

# %%
# Save and reload the model
# -------------------------
#
# ``model.save`` writes one ``.npz`` file: the arrays plus a JSON record of the parameters
# and the numerical settings, with a checksum; nothing is pickled, so loading a file from
# someone else cannot run code. :func:`bcnmf.load` reads it back. The protein names can be
# stored with the model. A reloaded model gives exactly the codes of the original.

with tempfile.TemporaryDirectory() as folder:
    saved = model.save(Path(folder) / "mice_model.npz", feature_names=data.feature_names)
    print("written:", saved.name, f"({saved.stat().st_size:,} bytes)")
    reloaded = bcnmf.load(saved)

print(type(reloaded).__name__, "alpha_ =", reloaded.alpha_)
print("same codes as the original:",
      np.array_equal(reloaded.transform(data.X), model.transform(data.X)))

# %%
# What you have seen
# ------------------
#
# - With the background as a reference, bcNMF looks for topics that the target uses and
#   the background does not. ``alpha="auto"`` set the strength of that preference from the
#   data alone; the alpha path shows how clear-cut the choice was.
# - :func:`bcnmf.topic_enrichment` compares each topic's use in the target and in the
#   background and, given labels, between groups of target cells; on this data the
#   genotype shows in the second comparison. :func:`bcnmf.top_features` says which
#   proteins carry a topic.
# - Scored against the genotype, which neither method saw, the bcNMF codes agreed with it
#   better on average than plain NMF's over the five starts.
# - A fitted model is one portable file.
#
# Next: :ref:`sphx_glr_auto_tutorials_plot_simulation.py` plants a signal whose truth is
# known, and :ref:`sphx_glr_auto_tutorials_plot_single_cell.py` runs the same method on
# single-cell counts in an AnnData object.
