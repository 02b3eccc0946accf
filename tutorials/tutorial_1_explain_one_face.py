"""
Explain one face
================

Train a tiny VGG-16 to tell the gender of synthetic faces, explain its decision on one face with LRP, draw the
relevance map, and compare two LRP composites and a gradient baseline, on that face and against the regions where
the faces carry gender.
"""

# %%
# Faces and a model
# -----------------
# :func:`lrp_faces.synthetic_faces` draws aligned frontal faces: identities differ in the eyes, nose and mouth, a
# binary "gender" in the jaw, the brows and the hair, and every image comes with a map of its face regions. Images
# are float tensors (N, 3, H, W), RGB in [0, 1], as everywhere in lrp-faces.
import matplotlib.pyplot as plt
import numpy as np
import torch

import lrp_faces
from lrp_faces.faces import REGIONS, TASK_REGIONS
from lrp_faces.zoo import finetune

torch.set_num_threads(1)  # tiny models run fastest on one thread
train = lrp_faces.synthetic_faces(10, 24, size=64, task="gender", seed=0)  # 10 identities x 24 images
test = lrp_faces.synthetic_faces(10, 4, size=64, task="gender", seed=1)  # held-out images of the same identities
print(train.images.shape, "classes:", train.class_names("gender"))

# %%
# A VGG-16 built by lrp-faces carries its preprocessing as its first module (a
# :class:`~lrp_faces.nn.PixelNorm`), so it takes the [0, 1] images as they are. This one has a sixteenth of the
# channels of the real network and trains in seconds; a study loads real checkpoints instead
# (:doc:`/howto/checkpoints`).
torch.manual_seed(0)  # the initial weights
base = lrp_faces.vgg16(num_classes=2, width=1 / 16, classifier_width=32, pool_size=1)
model = finetune(base, train, epochs=8, lr=3e-3, trainable="all", validation=test, progress=False)
print(f"accuracy on the held-out faces: {model.metadata['validation_accuracy']:.2f}")

# %%
# Explain one face
# ----------------
# :func:`lrp_faces.attribute` explains the *contrastive output* of the target class, the logit of the class minus
# the mean of the others (for two classes, the log-odds; :doc:`/concepts/contrastive`), with the default composite
# ``epsilon_gamma_box`` (:doc:`/concepts/lrp`). The map has one value per pixel, summed over the colour channels:
# positive where the pixel is evidence for the class, negative where it is evidence against.
face, label = test.images[:1], test.labels()[:1]
result = lrp_faces.attribute(model, face, target=label, return_output=True)
print("relevance", tuple(result.relevance.shape), "| class", test.class_names("gender")[int(label[0])],
      "| predicted", test.class_names("gender")[int(result.prediction[0])])
print(f"explained output {float(result.output[0]):.3f}, sum of the map {float(result.relevance.sum()):.3f}")

# %%
# LRP redistributes the explained output over the pixels, so the map sums to about the output (the biases keep a
# part). Drawn over the face, red is evidence for the class and blue against, on a colour scale symmetric around 0:

limit = float(result.relevance.abs().max())
figure, (left, right) = plt.subplots(1, 2, figsize=(6, 3.2))
left.imshow(face[0].permute(1, 2, 0))
left.set_title("face")
right.imshow(face[0].mean(0), cmap="gray", alpha=0.4)
right.imshow(result.relevance[0], cmap="bwr", vmin=-limit, vmax=limit, alpha=0.85)
right.set_title("epsilon_gamma_box")
for axis in (left, right):
    axis.set_axis_off()
figure.tight_layout()

# %%
# Compare methods
# ---------------
# Every method of the registry is one name away (:func:`lrp_faces.methods.names`). Here the default composite, the
# composite with z⁺ on the convolutions and a flat first layer, and the plain gradient of the same output:
methods = ["epsilon_gamma_box", "epsilon_plus_flat", "gradient"]
print(lrp_faces.methods.names())
maps = {method: lrp_faces.attribute(model, test.images, target=test.labels(), method=method) for method in methods}

figure, axes = plt.subplots(1, len(methods), figsize=(9, 3.2))
for axis, method in zip(axes, methods):
    relevance = maps[method][0]
    limit = float(relevance.abs().max())
    axis.imshow(face[0].mean(0), cmap="gray", alpha=0.4)
    axis.imshow(relevance, cmap="bwr", vmin=-limit, vmax=limit, alpha=0.85)
    axis.set_title(method)
    axis.set_axis_off()
figure.tight_layout()

# %%
# Because the faces are synthetic, we know where gender is: in the jaw, the brows and the hair
# (:data:`lrp_faces.faces.TASK_REGIONS`). The *relevance mass accuracy* is the share of a map's positive relevance
# that falls inside those regions, and the *rank accuracy* the share of its top-K pixels inside them, K being the
# regions' size (:doc:`/concepts/regions`). Averaged over the held-out faces:
from lrp_faces.analysis import mass_and_rank_accuracy

inside = np.isin(test.regions, [REGIONS.index(region) for region in TASK_REGIONS["gender"]])
print(f"the gender regions cover {inside.mean():.0%} of the pixels")
for method in methods:
    mass, rank = mass_and_rank_accuracy(maps[method].reshape(len(test), -1).numpy(), inside.reshape(len(test), -1))
    print(f"{method:>18}: mass accuracy {np.nanmean(mass):.2f}, rank accuracy {np.nanmean(rank):.2f}")

# %%
# A map that put its relevance anywhere would score about the regions' share of the pixels. The next tutorial asks
# the model itself: hide the pixels a map ranks first and see how fast the decision falls
# (:doc:`tutorial_2_masking_and_generalization`).
