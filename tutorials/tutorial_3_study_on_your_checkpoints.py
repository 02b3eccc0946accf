"""
A study on your own checkpoints
===============================

A real study starts from files: fine-tuned VGG-16 checkpoints, a folder of aligned face images with a CSV that
labels them, and a study file that ties them together. This tutorial makes small stand-ins for each of them in a
temporary folder, runs the study the way ``lrp-faces run study.toml`` does, and reads the results back. Replace the
stand-ins by your own files and the same study file runs your study (:doc:`/howto/checkpoints`,
:doc:`/howto/face_images`, :doc:`/howto/study_file`).
"""

# %%
# Checkpoints
# -----------
# Here two tiny gender classifiers that differ only in their random seed stand in for your fine-tuned models.
# :func:`lrp_faces.save_model` writes a checkpoint with everything needed to rebuild the model: the architecture,
# the preprocessing, the class names and the training record. A torchvision or VGG-Face state dict works too
# (``format = "torchvision"`` or ``"vgg_face"`` in the study file).
import pathlib
import tempfile

import numpy as np
import torch
from PIL import Image

import lrp_faces
from lrp_faces.zoo import ModelSpec, finetune

torch.set_num_threads(1)
folder = pathlib.Path(tempfile.mkdtemp(prefix="lrp_faces_study_"))
train = lrp_faces.synthetic_faces(8, 24, size=32, task="gender", seed=0)
for seed in (0, 1):
    torch.manual_seed(seed)  # the initial weights
    base = lrp_faces.vgg16(num_classes=2, width=1 / 16, classifier_width=32, pool_size=1)
    model = finetune(base, train, seed=seed, epochs=10, lr=3e-3, trainable="all", progress=False)
    lrp_faces.save_model(model, folder / "models" / f"gender-seed{seed}.pt",
                         spec=ModelSpec("scratch", "gender", seed))
print(lrp_faces.read_checkpoint_info(folder / "models" / "gender-seed0.pt")["class_names"])

# %%
# Face images
# -----------
# Your faces are image files, aligned and cropped, with a CSV manifest that gives each file's identity and gender
# (``male``/``female``, ``m``/``f`` or ``1``/``0``). Here 24 held-out synthetic faces, written as PNG files:
faces = lrp_faces.synthetic_faces(8, 3, size=32, seed=1)
(folder / "faces").mkdir()
rows = ["path,identity,gender"]
for image, image_id, identity, gender in zip(faces.images, faces.image_ids, faces.identity, faces.gender):
    pixels = (image.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    Image.fromarray(pixels).save(folder / "faces" / f"{image_id}.png")
    rows.append(f"faces/{image_id}.png,person{identity},{faces.class_names('gender')[gender]}")
(folder / "faces.csv").write_text("\n".join(rows) + "\n")
print(*rows[:3], sep="\n")

# %%
# The study file
# --------------
# One file declares the models, the images, the method and the masking and analysis settings; paths are relative
# to the file. The file is checked completely before anything runs.
(folder / "study.toml").write_text('''
[study]
name = "my-checkpoints"

[zoo]
image_size = 32
models = [{pretraining = "scratch", task = "gender", seed = 0, path = "models/gender-seed0.pt"},
          {pretraining = "scratch", task = "gender", seed = 1, path = "models/gender-seed1.pt"}]

[dataset]
kind = "manifest"
path = "faces.csv"

[attribution]
method = "epsilon_gamma_box"

[masking]
fractions = [0.0, 0.1, 0.2, 0.3, 0.5]
n_bootstrap = 200
n_permutations = 200

[analysis]
run = ["similarity", "regions"]
similarity = {n_bootstrap = 200}
regions = {n_bootstrap = 200}
''')

from lrp_faces.cli.study import Study

study = Study.from_toml(folder / "study.toml")
print(study.name, "|", len(study.zoo.models), "models |", study.dataset.kind, "|", study.masking.config.fractions)

# %%
# Run it
# ------
# :class:`lrp_faces.cli.runner.StudyRun` runs the steps into a results directory, exactly as
# ``lrp-faces run study.toml --out results`` does: the relevance cube, the masking benchmark with generalisation
# between the models, the analyses and the HTML report. A rerun skips every step whose file holds the same settings.
from lrp_faces.cli.runner import StudyRun

run = StudyRun(study, folder / "results", progress=False, log=print)
run.all()
print(sorted(path.name for path in run.out.iterdir()))

# %%
# Read the results
# ----------------
# Every result is a NetCDF file that opens in xarray; the cube opens lazily with :func:`lrp_faces.cube.open`.
import xarray as xr

from lrp_faces import cube

maps = cube.open(run.out / "cube")
print(dict(maps.relevance.sizes), "|", [spec.id for spec in maps.lrp.models()])
with xr.open_dataset(run.out / "masking.nc") as masking:
    index = masking.generalization_index.squeeze(drop=True)
    print("G between the two seeds:", index.round(2).values.tolist())
with xr.open_dataset(run.out / "similarity.nc") as similarity:
    print(f"{similarity.attrs['metric']} correlation of the two seeds' maps, averaged over the images:",
          round(float(similarity["mean"][0, 1]), 2))
maps.close()

# %%
# The report, ``results/report/index.html``, shows the same results as figures with a reading of each; it opens
# from disk without a network. ``lrp-faces info results`` summarises the folder on the command line.
print((run.out / "report" / "index.html").is_file())
