"""
Masking and generalisation
==========================

Is a relevance map right? Ask the model: hide the pixels the map ranks first and watch its decision fall. This
tutorial draws the masking curves of one model, reduces them to an AOPC, and then masks each of four small models
with the maps of the others to measure how far a map generalises, the index G of :doc:`/concepts/masking`.
"""

# %%
# Four small models
# -----------------
# The quick demo zoo: small VGG-16s (an eighth of the channels, 64-pixel faces) pretrained on synthetic objects or
# on synthetic faces, standing in for ImageNet and VGGFace, and fine-tuned for gender or for identity, one seed
# each. The first call trains them (about a minute on two cores) and caches the checkpoints; later calls load them
# (the build of these pages has already run the demo, so here they load). A zoo maps each
# :class:`~lrp_faces.zoo.ModelSpec` (pretraining, task, seed) to a model; a real study reads one from a TOML file.
import tempfile

import torch

from lrp_faces import cube, masking, plots
from lrp_faces.zoo import DemoSettings, ModelSpec, demo_study_data, demo_zoo

torch.set_num_threads(1)  # small models run fastest on one thread
settings = DemoSettings.quick()
zoo = demo_zoo(settings, progress=False)
train, test = demo_study_data(settings)  # the study's faces: identities the models were fine-tuned on
faces = test.subset(range(0, len(test), 2))  # every other held-out face, to keep this short
print(zoo)
print(len(faces), "faces of", tuple(faces.images.shape[-2:]), "pixels")

# %%
# The relevance cube
# ------------------
# :func:`lrp_faces.cube.compute` explains every image with every model and stores the maps as one labelled
# :class:`xarray.Dataset`, one NetCDF4 file per model (:doc:`/concepts/cube`). Each model explains its own task's
# true class.
folder = tempfile.mkdtemp(prefix="lrp_faces_tutorial_")
maps = cube.compute(zoo, faces, f"{folder}/cube", progress=False)
print(dict(maps.relevance.sizes))

# %%
# Masking curves of one model
# ---------------------------
# :func:`lrp_faces.masking.curves` hides growing fractions of each image's pixels, most relevant first (MoRF),
# least relevant first (LeRF) or in a random order, fills them with the mean colour and scores the model on each
# masked image. A good map makes the MoRF curve fall fast and the LeRF curve stay up.
spec = ModelSpec("faces", "identity", 0)
relevance = maps.relevance.sel(pretraining="faces", task="identity", seed=0)
fractions = (0.0, 0.1, 0.2, 0.3, 0.5)
by_order = {order: masking.curves(zoo[spec], faces.images, faces.labels("identity"), relevance,
                                  fractions=fractions, order=order, image_ids=faces.image_ids)
            for order in ("morf", "lerf", "random")}
for order, result in by_order.items():
    print(f"{order:>6}: accuracy {[round(float(value), 2) for value in result.accuracy.values]}")
figure = plots.masking_curves(by_order)

# %%
# The AOPC (area over the perturbation curve) is the drop of the explained output, averaged over the fractions:
# the larger it is under MoRF, the better the map found what the model needs. The result says how it is defined.
for order, result in by_order.items():
    print(f"{order:>6}: AOPC of the output {float(result.mean_aopc_output):.2f}")
print("AOPC:", by_order["morf"].attrs["aopc"])

# %%
# Generalisation across models
# ----------------------------
# :func:`lrp_faces.masking.generalization` masks every model with every model's maps (and with a random order) and
# scores each target on its own task. From the AOPCs it computes
#
# .. math::
#
#    G(s \to t) = \frac{\mathrm{AOPC}(s \to t) - \mathrm{AOPC}(\mathrm{random} \to t)}
#                      {\mathrm{AOPC}(t \to t) - \mathrm{AOPC}(\mathrm{random} \to t)},
#
# 1 when the source's maps hurt the target as much as the target's own maps, 0 when no more than a random order,
# with bootstrap intervals over images.
result = masking.generalization(maps, zoo, faces, fractions=fractions, n_bootstrap=200, n_permutations=200,
                                progress=False)
index = result.generalization_index.stack(source=["source_pretraining", "source_task", "source_seed"],
                                          target=["target_pretraining", "target_task", "target_seed"])
print(index.round(2).to_pandas())
figure = plots.generalization_heatmap(result)

# %%
# The summary averages G over the pairs of each relation: another task, another pretraining, or both (the quick zoo
# has one seed, so no "other seed" pairs).
summary = result.summary_generalization_index
for relation, value, low, high in zip(result.relation.values, summary.values,
                                      result.summary_generalization_index_ci_low.values,
                                      result.summary_generalization_index_ci_high.values):
    if relation != "same_model" and value == value:  # NaN where no pair has the relation
        print(f"{relation:>26}: G = {value:.2f} [{low:.2f}, {high:.2f}]")
figure = plots.generalization_by_relation(result)

# %%
# With four small models and 40 synthetic faces these are toy numbers. ``lrp-faces demo`` runs the same benchmark
# on twelve models (three seeds) with the analyses, and :doc:`/gallery` shows its figures.
